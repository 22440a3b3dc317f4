"""The wheel: every code package, and the shipped checkpoints and assets, found at run time
from an installed copy (not only from a checkout)."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_code_package_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "fg3dgs").rglob(
        "__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to pyproject.toml's packages"


def test_wheel_carries_checkpoints_and_assets(tmp_path):
    src = tmp_path / "src"         # build from a copy: setuptools writes build/ beside the source
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("fg3dgs", "checkpoints", "assets"):
        shutil.copytree(ROOT / name, src / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)], check=True)
    wheel = next((tmp_path / "dist").glob("fg3dgs-*.whl"))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        z.extractall(site)
    for folder in ("checkpoints", "assets"):
        for f in (src / folder).rglob("*"):
            if f.is_file():
                assert f"fg3dgs/{f.relative_to(src).as_posix()}" in names, f
    for f in (src / "fg3dgs").rglob("*"):          # code and its data files (.js, .toml)
        if f.is_file():
            assert f.relative_to(src).as_posix() in names, f"{f}: add it to package-data"
    # an installed copy, away from the checkout: the shipped files are found inside it
    code = ("from fg3dgs.io_utils import checkpoints_dir, assets_dir\n"
            "from fg3dgs.zoo import resolve_identity\n"
            "from fg3dgs.pipeline.studio import examples\n"
            "print(checkpoints_dir(), assets_dir(), resolve_identity('astronaut-demo'),\n"
            "      len(examples()))")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out[0] == str(site / "fg3dgs" / "checkpoints")
    assert out[1] == str(site / "fg3dgs" / "assets")
    assert Path(out[2]).is_relative_to(site) and (Path(out[2]) / "identity.safetensors").is_file()
    assert out[3] == "3"
