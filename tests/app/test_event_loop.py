"""The daemon's event loop ([network] event_loop): uvloop by default, asyncio on request, a
clear error for anything else, and the daemon itself runs and answers on uvloop."""
import asyncio
import subprocess
import sys

import pytest

from kadtalk.app.cli import run_on_loop
from kadtalk.app.config import Config, ConfigError, load_config

uvloop = pytest.importorskip("uvloop")


async def _loop_type() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_the_default_loop_is_uvloops():
    assert Config().event_loop == "uvloop"
    assert run_on_loop("uvloop", _loop_type()).startswith("uvloop")


def test_asyncio_on_request():
    assert run_on_loop("asyncio", _loop_type()).startswith("asyncio")


def test_an_unknown_loop_is_a_config_error_naming_the_setting():
    with pytest.raises(ConfigError, match=r"\[network\] event_loop"):
        run_on_loop("trio", _loop_type())


def test_the_setting_is_read_from_config_toml(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[network]\nevent_loop = "asyncio"\n')
    assert load_config(path).event_loop == "asyncio"


def test_a_bad_setting_stops_the_daemon_with_one_line(tmp_path):
    home = tmp_path / "home"
    (home / ".config" / "kadtalk").mkdir(parents=True)
    (home / ".config" / "kadtalk" / "config.toml").write_text('[network]\nevent_loop = "trio"\n')
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "kadtalk", "daemon", "--port", "0",
                           "--capture", "none", "--playback", "none"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "[network] event_loop" in done.stderr and "Traceback" not in done.stderr
