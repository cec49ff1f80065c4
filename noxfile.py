"""Every supported Python + TensorFlow combination, and the packaging checks.

    nox                    # every session, as CI runs them (`bash .ci/run`)
    nox -s tests-3.9       # one combination
    nox -s tests-3.9 -- -m 'not cluster and not e2e'   # pytest arguments after `--`

Interpreters are looked up on PATH, then under pyenv ($PYENV_ROOT or ~/.pyenv). A
session whose Python is missing is skipped with a message; on CI (the `CI`
environment variable is set) nox fails it instead, so CI never passes by testing less.

Adding a session: write it below and add its name to STEPS in `.ci/run`. Reuse the
helpers: `find_python("3.X")` for its interpreter, `install_combination(session,
NEWEST, extras="test,...")` for the newest combination with more extras,
`run_pytest(session, "-m", "marker")` for the tests (`allow_no_tests=True` only
where deselecting every test is expected). E.g. S3/GCS emulator tests on the
newest combination:

    @nox.session(python=find_python(NEWEST.python))
    def remote(session):
        '''Python 3.11 + TF 2.15 with tensorflow-io: the S3 and GCS emulator tests.'''
        install_combination(session, NEWEST, extras="test,remote")
        run_pytest(session, "-m", "remote")

and a session outside the Estimator range (the newest TensorFlow with Keras 3)
installs its own requirements with `session.install(...)` in the same way.
"""

import dataclasses
import email.parser
import json
import logging
import os
import pathlib
import re
import runpy
import shutil
import subprocess
import tarfile
import zipfile
from typing import Iterator, List, Optional, Tuple

import nox

nox.needs_version = ">=2025.5.1"
# A missing interpreter is reported as missing (a skip locally, an error on CI), never
# downloaded: CI machines reach the package registries only.
nox.options.download_python = "never"
nox.options.error_on_external_run = True

ROOT = pathlib.Path(__file__).resolve().parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
DIST = ROOT / "dist"
# TensorFlow's C++ start-up lines go to the same captured stream as a command's output.
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "3"}


@dataclasses.dataclass(frozen=True)
class Combination:
    """A supported Python + TensorFlow pair and what CI runs on it.

    Attributes:
      python: "3.X".
      tensorflow: "2.Y"; tensorflow, tensorflow-estimator and tensorboard 2.Y.* are
        installed.
      pins: requirements of the test environment only (never the library's
        dependencies).
      markers: the pytest `-m` expression CI runs; empty for the whole suite.
      extras: the package's extras to install.
    """

    python: str
    tensorflow: str
    pins: Tuple[str, ...] = ()
    markers: str = ""
    extras: str = "test,estimator"

    @property
    def requirements(self) -> List[str]:
        """TensorFlow's three packages at this minor version, then the pins."""
        minor = f"~={self.tensorflow}.0"
        packages = ["tensorflow", "tensorflow-estimator", "tensorboard"]
        return [package + minor for package in packages] + list(self.pins) + ALL_PINS


# The older combinations run the suite minus the cluster tests (the slowest part: a
# real 4-process cluster per test) to keep CI short. Their numpy and protobuf are
# pinned to the releases the suite was measured with, within what those TensorFlow
# releases were built against (2.13: numpy<=1.24.3; both: numpy<2, protobuf<5), so a
# new release of either never changes what these frozen combinations test. The
# newest gets what `pip install best_exporter` gets today, unpinned, and runs
# everything.
# TensorBoard 2.13-2.15 imports pkg_resources, which setuptools 82 removed; without it
# `tensorboard --logdir` fails to start (virtualenv seeds the newest setuptools).
ALL_PINS = ["setuptools<82"]
# Without the objectstore extra (TF 2.15 only) its tests fail under CI=true.
OLDER_MARKERS = "not cluster and not objectstore"
COMBINATIONS = (
    Combination("3.9", "2.13", pins=("numpy==1.24.3", "protobuf==4.25.*"), markers=OLDER_MARKERS),
    Combination("3.10", "2.14", pins=("numpy==1.26.4", "protobuf==4.25.*"), markers=OLDER_MARKERS),
    # The objectstore extra's tensorflow-io 0.36 exists for TF 2.15 only.
    Combination("3.11", "2.15", extras="test,estimator,objectstore"),
)
NEWEST = COMBINATIONS[-1]


# ----------------------------------------------------------------------------
# Helpers for sessions.


def _python_version(executable: str) -> Optional[str]:
    """ "3.X" of a Python executable, or None if it does not run (a pyenv shim of a
    version that is installed but not active exits 127)."""
    try:
        result = subprocess.run(
            [executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _pyenv_root() -> pathlib.Path:
    return pathlib.Path(os.environ.get("PYENV_ROOT") or pathlib.Path.home() / ".pyenv")


def _pyenv_pythons(version: str) -> List[pathlib.Path]:
    """`python3.X` of each pyenv release 3.X.Z, newest first."""
    found = [
        path
        for path in _pyenv_root().glob(f"versions/{version}.*/bin/python{version}")
        if re.fullmatch(rf"{re.escape(version)}\.\d+", path.parents[1].name)
    ]
    return sorted(found, key=lambda path: int(path.parents[1].name.split(".")[-1]), reverse=True)


def find_python(version: str) -> str:
    """The path of a working `python3.X` on PATH or under pyenv.

    Args:
      version: "3.X".

    Returns:
      The interpreter's path, or `version` itself if there is none: nox then reports
      a missing interpreter (a skip locally, a failure on CI).
    """
    on_path = shutil.which(f"python{version}")
    for candidate in ([on_path] if on_path else []) + [str(p) for p in _pyenv_pythons(version)]:
        if _python_version(candidate) == version:
            return candidate
    consequence = "fail (CI is set)" if "CI" in os.environ else "are skipped (on CI they fail)"
    logging.getLogger("nox").warning(
        "Python %s is neither on PATH nor under %s/versions: its sessions %s. "
        "Install it, e.g. `pyenv install %s`.",
        version,
        _pyenv_root(),
        consequence,
        version,
    )
    return version


def install_combination(session: nox.Session, combination: Combination, extras: str) -> None:
    """Installs the package editable, as `make test` does, with `extras`, and the
    combination's TensorFlow and pins, in one resolution."""
    session.install("-e", f".[{extras}]", *combination.requirements)


def run_pytest(session: nox.Session, *args: str, allow_no_tests: bool = False) -> None:
    """Runs pytest on the source tree, as `make test` does.

    Arguments after `--` on the nox command line come last and win (a later `-m`
    replaces an earlier one).

    Args:
      session: the nox session.
      *args: pytest arguments.
      allow_no_tests: whether pytest's exit status 5 (no test was collected) counts
        as success; only for a session whose tests may all be deselected on purpose.
    """
    success_codes = [0, 5] if allow_no_tests else [0]
    session.run(
        "python", "-m", "pytest", "-ra", *args, *session.posargs, success_codes=success_codes
    )


def _installing_only(session: nox.Session) -> bool:
    """Whether nox runs only the install commands (`--install-only`), in which
    `session.run` does nothing and returns None."""
    return session.run("python", "--version", silent=True) is None


def _last_line(session: nox.Session, *args: str) -> str:
    """The last line a command prints, with TensorFlow's C++ logging off."""
    lines = session.run(*args, silent=True, env=QUIET_TF).strip().splitlines()
    return lines[-1] if lines else ""


def _last_json(session: nox.Session, *args: str):
    """The JSON document a command prints last, with TensorFlow's C++ logging off."""
    output = session.run(*args, silent=True, env=QUIET_TF)
    start = re.search(r"^[\[{]", output, re.MULTILINE)
    return json.loads(output[start.start() :] if start else output)


def _version() -> str:
    """best_exporter's version, read without importing the package (and TensorFlow)."""
    return runpy.run_path(str(ROOT / "best_exporter" / "version.py"))["__version__"]


# ----------------------------------------------------------------------------
# Tests: one session per combination, named tests-3.X.


def _define_test_session(combination: Combination) -> None:
    def session_function(session: nox.Session) -> None:
        install_combination(session, combination, extras=combination.extras)
        session.run("python", "-c", "import tensorflow as tf; print('TensorFlow', tf.__version__)")
        run_pytest(session, *(["-m", combination.markers] if combination.markers else []))

    scope = f"pytest -m '{combination.markers}'" if combination.markers else "the whole suite"
    session_function.__doc__ = (
        f"Python {combination.python} + TF {combination.tensorflow}: {scope}."
    )
    nox.session(
        session_function, name=f"tests-{combination.python}", python=find_python(combination.python)
    )


for _combination in COMBINATIONS:
    _define_test_session(_combination)


# The newest TensorFlow and Keras 3 that install on Python 3.11, last verified; the
# Keras front-end's tests run there, the modules that need tf.estimator are skipped.
KERAS3_REQUIREMENTS = ("tensorflow==2.21.0", "keras==3.15.1")
# Checks the session tests what it says: Keras 3 as tf.keras (or tf_keras, with
# TF_USE_LEGACY_KERAS=1), and no tf.estimator.
_KERAS_CHECK = """
import os, keras, tensorflow as tf
from best_exporter import _compat
assert keras.__version__.startswith("3."), keras.__version__
assert not _compat.has_estimator(), tf.__version__
legacy = os.environ.get("TF_USE_LEGACY_KERAS") == "1"
assert legacy != hasattr(tf.keras, "ops"), "tf.keras is not the Keras this session tests"
print("TensorFlow", tf.__version__, "with", "tf_keras" if legacy else "Keras " + keras.__version__)
"""


@nox.session(python=find_python("3.11"))
def keras3(session: nox.Session) -> None:
    """Python 3.11 + the newest TF with Keras 3: best_exporter.keras and the core."""
    session.install("-e", ".[test]", *KERAS3_REQUIREMENTS)
    session.run("python", "-c", _KERAS_CHECK, env=QUIET_TF)
    # tensorflow-io (the objectstore extra) exists for TF 2.15 only.
    run_pytest(session, "-m", "not objectstore")


@nox.session(name="keras3-legacy", python=find_python("3.11"))
def keras3_legacy(session: nox.Session) -> None:
    """The same TF with tf_keras (Keras 2) as tf.keras: Keras 2 on TF >= 2.16."""
    session.install("-e", ".[test]", *KERAS3_REQUIREMENTS, "tf_keras==2.21.0")
    env = {"TF_USE_LEGACY_KERAS": "1"}
    session.run("python", "-c", _KERAS_CHECK, env={**QUIET_TF, **env})
    session.run("python", "-m", "pytest", "-ra", "-m", "not objectstore", *session.posargs, env=env)


# ----------------------------------------------------------------------------
# Packaging: what `pip install best_exporter` gets.


def _source_modules() -> List[str]:
    return sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "best_exporter").rglob("*.py"))


def _problems_of_wheel(wheel: pathlib.Path, version: str) -> Iterator[str]:
    """What is missing from or does not belong in the wheel; nothing if it is right."""
    dist_info = f"best_exporter-{version}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    for required in ["best_exporter/py.typed", f"{dist_info}/licenses/LICENSE", *_source_modules()]:
        if required not in names:
            yield f"{required} is missing"
    # The entry point pyproject.toml declares, so that the check follows a rename.
    target = PYPROJECT["project"]["scripts"]["best-exporter"]
    console_script = (
        r"^\[console_scripts\]\n(?:[^[].*\n)*?best-exporter = " + re.escape(target) + "$"
    )
    if not re.search(console_script, entry_points, re.MULTILINE):
        yield f"no console script `best-exporter = {target}` in:\n{entry_points}"
    for name in names:
        if name.split("/")[0] not in ("best_exporter", dist_info) or "__pycache__" in name:
            yield f"{name} does not belong in the wheel (tests, examples and caches stay out)"


def _problems_of_sdist(sdist: pathlib.Path, version: str) -> Iterator[str]:
    """What is missing from or does not belong in the sdist; nothing if it is right."""
    prefix = f"best_exporter-{version}/"
    with tarfile.open(sdist) as archive:
        names = [name[len(prefix) :] for name in archive.getnames() if name.startswith(prefix)]
    # What building the wheel needs, then what running the tests from the sdist needs.
    required = ["pyproject.toml", "README.md", "LICENSE", "best_exporter/py.typed"]
    required += _source_modules()
    required += ["CHANGELOG.md", "tests/conftest.py", "examples/train_dnn_classifier.py"]
    for name in required:
        if name not in names:
            yield f"{name} is missing"
    for name in names:
        if name.startswith((".ci/", ".nox/", ".venv/", "dist/")) or "__pycache__" in name:
            yield f"{name} does not belong in the sdist"


def _problems_of_classifiers(session: nox.Session, wheel: pathlib.Path, version: str) -> List[str]:
    """The wheel's trove classifiers that PyPI does not know (it rejects the upload)."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(f"best_exporter-{version}.dist-info/METADATA").decode()
    classifiers = email.parser.Parser().parsestr(metadata).get_all("Classifier") or []
    script = (
        "import sys, trove_classifiers as t; print(*set(sys.argv[1:]) - t.classifiers, sep='\\n')"
    )
    unknown = session.run("python", "-c", script, *classifiers, silent=True)
    return [f"unknown trove classifier: {c}" for c in unknown.splitlines() if c]


@nox.session(python=find_python(NEWEST.python))
def package(session: nox.Session) -> None:
    """Builds the sdist, and the wheel from it, into dist/, and checks both."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "packaging"))
    if _installing_only(session):
        return
    shutil.rmtree(DIST, ignore_errors=True)
    # `python -m build` builds the wheel from the sdist: a file the build needs and
    # the sdist lacks fails it.
    session.run("python", "-m", "build", "--outdir", str(DIST), str(ROOT))
    session.run("twine", "check", "--strict", *(str(p) for p in sorted(DIST.iterdir())))

    version = _version()
    [wheel] = DIST.glob("*.whl")
    [sdist] = DIST.glob("*.tar.gz")
    problems = [*_problems_of_wheel(wheel, version), *_problems_of_sdist(sdist, version)]
    problems += _problems_of_classifiers(session, wheel, version)
    if problems:
        session.error("\n".join([f"{wheel.name}, {sdist.name}:", *problems]))
    session.log(f"{wheel.name}, {sdist.name}: contents, entry point and classifiers are right")


@nox.session(python=find_python(NEWEST.python), requires=["package"])
def wheel(session: nox.Session) -> None:
    """Installs dist/'s wheel into a fresh venv and runs the example with it.

    Only the wheel's declared dependencies are installed. Then, outside the
    repository: `best-exporter --version`, the example for a few steps, and
    `best-exporter list` of its exports.
    """
    # The wheel is built by `package`, which `--install-only` does not run: it is
    # installed by `session.run`, in the run phase.
    if _installing_only(session):
        return
    wheels = sorted(DIST.glob("best_exporter-*.whl"))
    if len(wheels) != 1:
        session.error(f"expected one wheel in {DIST}, found {[w.name for w in wheels]}")
    # The estimator extra keeps TensorFlow at 2.13-2.15, as Estimator users install it.
    session.run("python", "-m", "pip", "install", "--quiet", f"{wheels[0]}[estimator]")
    session.run("python", "-m", "pip", "check")

    workdir = pathlib.Path(session.create_tmp()).resolve()
    session.chdir(workdir)  # Nothing may come from the source tree.
    location = _last_line(
        session, "python", "-c", "import best_exporter; print(best_exporter.__file__)"
    )
    if not location.startswith(session.virtualenv.location):
        session.error(f"best_exporter was imported from {location}, not from the installed wheel")
    expected = f"best-exporter {_version()}"
    printed = _last_line(session, "best-exporter", "--version")
    if printed != expected:
        session.error(f"`best-exporter --version` printed {printed!r}, expected {expected!r}")

    model_dir = workdir / "model"
    shutil.rmtree(model_dir, ignore_errors=True)
    session.run(
        "python",
        str(ROOT / "examples" / "train_dnn_classifier.py"),
        f"--model_dir={model_dir}",
        "--steps=40",
        "--save_checkpoints_steps=20",
        "--exports_to_keep=2",
    )
    export_dir = model_dir / "export" / "best_exporter"
    listing = _last_json(session, "best-exporter", "list", "--json", str(export_dir))
    steps = [(row["record"] or {}).get("global_step") for row in listing["versions"]]
    if 20 not in steps or not listing["served"]:
        session.error(f"`best-exporter list --json` shows no served export of step 20:\n{listing}")
    session.log(f"{wheels[0].name} installs and runs the example; exported steps: {steps}")
