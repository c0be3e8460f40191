"""Installation: `make install` lays out the documented tree, and what it
installs is sound: the systemd units pass `systemd-analyze verify`, the man
pages render without warnings, the sample configuration passes
`sluice-worker -n`.

Two installs are made. One into DESTDIR with PREFIX=/usr/local, as a package
build would, checks the tree and the paths written into the files. One into a
real temporary PREFIX (no DESTDIR), so that every path a unit names exists:
systemd-analyze checks that ExecStart= binaries are executable and, with
MANPATH pointing there, that the Documentation= man pages exist.

Every make here builds into a temporary BUILD folder of this module's own,
never the repository's build/ (which `make test` is using at the time).

These tests need no services; they run from tests/run-system like the rest.
"""
import os
import pathlib
import shutil
import subprocess

import pytest

from harness import ROOT

UNITS = ["sluice-worker@.service", "sluice-workers.target"]
MANS = ["man1/sluicectl.1", "man3/sluice_handler.3", "man5/sluice.conf.5", "man8/sluice-worker.8"]


def _make(build, *args):
    cmd = ["make", "--no-print-directory", "-j2", "-C", str(ROOT), f"BUILD={build}", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def _make_install(build, destdir=None, prefix="/usr/local"):
    args = ["install", f"PREFIX={prefix}"]
    if destdir is not None:
        args.append(f"DESTDIR={destdir}")
    return _make(build, *args)


def _version():
    for line in (ROOT / "common/version.h").read_text().splitlines():
        if line.startswith("#define SL_VERSION "):
            return line.split('"')[1]
    raise AssertionError("no SL_VERSION in common/version.h")


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """A build folder shared by this module's installs: the first one
    compiles everything, the others only what names the installed paths."""
    return tmp_path_factory.mktemp("build")


@pytest.fixture(scope="module")
def destdir(tmp_path_factory, build):
    d = tmp_path_factory.mktemp("destdir")
    _make_install(build, destdir=d)
    return d


@pytest.fixture(scope="module")
def prefix(tmp_path_factory, build):
    p = tmp_path_factory.mktemp("prefix")
    _make_install(build, prefix=str(p))
    return p


def test_install_follows_prefix_after_plain_build(build, tmp_path):
    """`make` then `make install PREFIX=/usr`: the installed sluicectl looks
    for migrations under /usr/share, not the /usr/local of the first build."""
    _make(build, "all")
    assert b"/usr/local/share/sluice/sql" in (build / "sluicectl").read_bytes()
    _make_install(build, destdir=tmp_path, prefix="/usr")
    ctl = tmp_path / "usr/bin/sluicectl"
    strings = subprocess.run(["strings", str(ctl)], capture_output=True, text=True,
                             timeout=60).stdout.splitlines()
    assert "/usr/share/sluice/sql" in strings
    assert not any("/usr/local" in s for s in strings)
    # And what it does: with no --dir, no $SLUICE_SQL_DIR and no ./schemas/sql,
    # migrate names the installed folder.
    env = {k: v for k, v in os.environ.items() if k != "SLUICE_SQL_DIR"}
    out = subprocess.run([str(ctl), "migrate", "--help"], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=60)
    assert "/usr/share/sluice/sql" in out.stdout + out.stderr


def test_install_tree(destdir):
    root = destdir / "usr/local"
    expected = {
        "sbin/sluice-worker", "bin/sluicectl", "etc/sluice/worker.conf",
        "lib/systemd/system/sluice-worker@.service", "lib/systemd/system/sluice-workers.target",
        "share/man/man1/sluicectl.1", "share/man/man3/sluice_handler.3",
        "share/man/man5/sluice.conf.5", "share/man/man8/sluice-worker.8",
        "include/sluice/handler.h", "lib/pkgconfig/sluice.pc",
    }
    for sub, pattern in (("sql", "schemas/sql/*.sql"), ("ledger", "schemas/ledger/*.sql"),
                         ("jobs", "schemas/jobs/*.json"),
                         ("events", "schemas/events/*.json")):
        expected |= {f"share/sluice/{sub}/{p.name}" for p in ROOT.glob(pattern)}
    assert any(e.startswith("share/sluice/sql/") for e in expected)
    assert any(e.startswith("share/sluice/ledger/") for e in expected)
    got = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert got == expected
    # Nothing outside the prefix.
    assert {p.name for p in destdir.iterdir()} == {"usr"}
    assert {p.name for p in (destdir / "usr").iterdir()} == {"local"}
    for f in ("sbin/sluice-worker", "bin/sluicectl"):
        assert os.access(root / f, os.X_OK), f
    for f in expected - {"sbin/sluice-worker", "bin/sluicectl"}:
        assert (root / f).stat().st_mode & 0o777 == 0o644, f


def test_installed_paths(destdir):
    root = destdir / "usr/local"
    unit = (root / "lib/systemd/system/sluice-worker@.service").read_text()
    assert "ExecStart=/usr/local/sbin/sluice-worker -c /usr/local/etc/sluice/%i.conf\n" in unit
    assert "ExecStartPre=/usr/local/sbin/sluice-worker -n -c /usr/local/etc/sluice/%i.conf\n" in unit
    for f in ["lib/systemd/system/" + u for u in UNITS] + ["share/man/" + m for m in MANS]:
        text = (root / f).read_text()
        assert "@" + "SBINDIR@" not in text and "@SYSCONFDIR@" not in text, f
        assert "@DATADIR@" not in text and "@VERSION@" not in text, f
    assert f'"sluice {_version()}"' in (root / "share/man/man8/sluice-worker.8").read_text()
    conf = (root / "etc/sluice/worker.conf").read_text()
    assert 'schema = "/usr/local/share/sluice/jobs/ledger.open.json"' in conf


def test_unit_settings():
    """The operational contract of the template, as the issue states it."""
    unit = (ROOT / "systemd/sluice-worker@.service").read_text()
    lines = {line.strip() for line in unit.splitlines()}
    for want in ("Type=notify", "NotifyAccess=main", "WatchdogSec=30", "Restart=on-failure",
                 "RestartSec=2", "ExecReload=/bin/kill -HUP $MAINPID", "KillSignal=SIGTERM",
                 "TimeoutStopSec=45", "DynamicUser=yes", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                 "PrivateDevices=yes", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
                 "SystemCallFilter=@system-service", "CapabilityBoundingSet=",
                 "PartOf=sluice-workers.target", "WantedBy=sluice-workers.target"):
        assert want in lines, want
    # The stop timeout must leave room for the default drain deadline.
    conf = (ROOT / "worker.conf").read_text()
    assert "shutdown_timeout = 30.0;" in conf
    target = (ROOT / "systemd/sluice-workers.target").read_text()
    assert "WantedBy=multi-user.target" in target


def _systemd_analyze():
    exe = shutil.which("systemd-analyze")
    if exe is None:
        # The machine images carry Debian's systemd package; a machine
        # without it needs `apt-get install systemd`.
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    return exe


def test_units_verify(prefix):
    exe = _systemd_analyze()
    unitdir = prefix / "lib/systemd/system"
    env = dict(os.environ, MANPATH=str(prefix / "share/man") + ":", SYSTEMD_LOG_LEVEL="notice")
    # A template is verified as an instance of itself; the target on its own.
    out = subprocess.run([exe, "verify", *(str(unitdir / u) for u in UNITS)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == "", out.stderr


def test_units_verify_catches_errors(prefix, tmp_path):
    """The check above would fail on a broken unit: a missing binary."""
    exe = _systemd_analyze()
    text = (prefix / "lib/systemd/system/sluice-worker@.service").read_text()
    broken = tmp_path / "sluice-worker@.service"
    broken.write_text(text.replace(str(prefix / "sbin/sluice-worker"), str(tmp_path / "nope")))
    env = dict(os.environ, MANPATH=str(prefix / "share/man") + ":")
    out = subprocess.run([exe, "verify", str(broken)], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode != 0
    assert "is not executable" in out.stderr


def test_sample_config_checks(prefix):
    """The installed sample, whose schema paths now point into the prefix, is valid."""
    conf = prefix / "etc/sluice/worker.conf"
    assert f'schema = "{prefix}/share/sluice/jobs/ledger.open.json"' in conf.read_text()
    out = subprocess.run([str(prefix / "sbin/sluice-worker"), "-n", "-c", str(conf)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{conf}: ok\n"


@pytest.mark.parametrize("page", MANS)
def test_man_pages_render(destdir, page):
    """The pages as installed under /usr/local, the paths users will read."""
    if shutil.which("man") is None:
        pytest.skip("man is not installed (Debian package man-db)")
    path = destdir / "usr/local/share/man" / page
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    out = subprocess.run(["man", "--warnings", "-l", str(path)], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr
    name = pathlib.Path(page).name.rsplit(".", 1)[0]
    assert name.upper() in out.stdout.splitlines()[0]
    # Every section the pages promise is there.
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "SEE ALSO"):
        assert f"\n{section}\n" in out.stdout, section


def test_man_documents_every_setting():
    """sluice.conf(5) names every setting of the sample worker.conf."""
    page = (ROOT / "man/sluice.conf.5").read_text().replace("\\-", "-")
    conf = (ROOT / "worker.conf").read_text()
    group = None
    settings = set()
    for raw in conf.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.endswith(": {"):
            group = line[:-3].strip()
        elif line.startswith("};"):
            group = None
        elif "=" in line and not line.startswith("{"):
            name = line.split("=", 1)[0].strip()
            settings.add(f"{group}.{name}" if group else name)
    settings |= {"jobs", "type", "handler", "schema", "result_topic"}
    assert "limits.shutdown_timeout" in settings and "executors" in settings
    for s in sorted(settings):
        assert f".BR {s} " in page or f".B {s}\n" in page, s
