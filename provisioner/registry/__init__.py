"""The host's image registry: Debian's docker-registry (CNCF distribution) run by lab.

- :mod:`.reference`: image names (docker's reference grammar) and where they are stored;
- :mod:`.service`: the registry processes (the local one, the pull-through cache) and
  the per-lab relays onto each lab's gateway;
- :mod:`.images`: ``lab image import|push|ls|rm`` with skopeo;
- :mod:`.host`: what ``lab up``, ``lab destroy``, ``lab registry`` and ``lab doctor`` do.
"""
