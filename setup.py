"""Ship templates/, boxes/ and Vagrantfile.j2 inside the installed package.

They live at the top of the checkout so users can read and edit them there;
build_py copies them to provisioner/data/ so an installed ``lab`` finds them too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHARED = ("templates", "boxes", "Vagrantfile.j2")


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "provisioner" / "data"
        for name in SHARED:
            source = ROOT / name
            dest = target / name
            if source.is_dir():
                shutil.copytree(source, dest, dirs_exist_ok=True)
            elif source.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest)


setup(cmdclass={"build_py": BuildWithData})
