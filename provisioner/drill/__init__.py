"""``lab drill``: etcd functional-tester style faults on a running cluster, each
checked against one rule: every member answers again and no acknowledged write is lost.

The plans (:mod:`.plan`), the ledger of acknowledged writes (:mod:`.ledger`), the
timeline of what was observed (:mod:`.timeline`), the verdicts (:mod:`.verdict`)
and the report (:mod:`.report`) are pure. :mod:`.engine` runs a scenario through a
:class:`~provisioner.drill.engine.Injector` (the lab's in
:mod:`provisioner.lifecycle.drill`, local etcd processes in the tests) and a client
over the host's etcd JSON gateway client.
"""
