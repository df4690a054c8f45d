"""Each image holds what its manifests run, and installs into the interpreter that runs it.

Read from the Dockerfiles (final stage: COPY list, ENV, RUN, USER) and the rendered
manifests, without Docker: every repo module an entry point can import (lazy imports
included) is COPYed into the image that runs it; the ETL image's pip and build check use the
interpreter Spark will start for the job; the ETL pins equal the Spark 3.5 test environment's.
"""

from __future__ import annotations

import re
import shlex
import tomllib

import pytest

from helper import image_contract as ic
from helper import validate
from helper.settings import REPO_ROOT

pytestmark = pytest.mark.cluster

DOCKERFILES = {
    "ghcr.io/ml-platform/etl": REPO_ROOT / "data_platform/Dockerfile",
    "ghcr.io/ml-platform/tune": REPO_ROOT / "ml_platform/Dockerfile",
    "ghcr.io/ml-platform/predictor": REPO_ROOT / "inference_service/Dockerfile",
}
# What the Stackable Spark image sets and the operator leaves alone (encoded once, from the
# pinned release 25.7.0 of both): spark-k8s/Dockerfile `ENV PYSPARK_PYTHON=/usr/bin/python`
# (a link to python3.11) in https://github.com/stackabletech/docker-images/blob/25.7.0/spark-k8s/Dockerfile
# and no PYSPARK_* in https://github.com/stackabletech/spark-k8s-operator/tree/25.7.0/rust ;
# its user: STACKABLE_USER_UID "1000" in https://github.com/stackabletech/docker-images/blob/25.7.0/conf.py
STACKABLE_PYSPARK_PYTHON = "/usr/bin/python"
STACKABLE_UID = "1000"
SPARK35_PROJECT = REPO_ROOT / "tests/envs/spark35/pyproject.toml"


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return [o for t in validate.discover_targets() for o in validate.render(t)]


def _image(ref: str) -> str:
    return ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref


def _module(command: list[str]) -> str:
    """`python -m pkg[.mod] ...` -> the module Python runs (`pkg.__main__` for a package)."""
    assert command[:2] == ["python", "-m"], command
    name = command[2]
    return f"{name}.__main__" if (REPO_ROOT / name.replace(".", "/")).is_dir() else name


def entry_points(rendered: list[dict]) -> list[tuple[str, str, str]]:
    """(object, image, module) for every entry point a manifest runs."""
    out = []
    for obj in rendered:
        kind, spec = obj["kind"], obj.get("spec") or {}
        name = validate.object_name(obj)
        if kind == "SparkApplication":
            path = spec["mainApplicationFile"].removeprefix("local:///app/")
            module = path.removesuffix(".py").replace("/", ".")
            out.append((name, _image(spec["sparkImage"]["custom"]), module))
        elif kind == "RayJob":
            head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
            image = _image(ic.container(head)["image"])
            out.append((name, image, _module(shlex.split(spec["entrypoint"]))))
        elif kind in {"ServingRuntime", "Job"}:
            pod = spec if kind == "ServingRuntime" else spec["template"]["spec"]
            for c in pod["containers"]:
                out.append((name, _image(c["image"]), _module(c["command"])))
    return sorted(set(out))


def test_every_kind_of_entry_point_is_found(rendered):
    kinds = {obj.split("/")[0] for obj, _, _ in entry_points(rendered)}
    assert kinds == {"SparkApplication", "RayJob", "ServingRuntime", "Job"}


def test_every_module_an_entry_point_imports_is_in_its_image(rendered):
    missing = {}
    for obj, image, module in entry_points(rendered):
        spec = ic.parse_dockerfile(DOCKERFILES[image])
        gaps = ic.missing_from_image([module], spec)
        if gaps:
            missing[f"{obj} ({image}, {module})"] = gaps
    assert missing == {}


def test_the_import_check_sees_a_module_the_image_leaves_out():
    """Not vacuous: the predictor image without ml_platform/ misses what promotion imports."""
    spec = ic.parse_dockerfile(DOCKERFILES["ghcr.io/ml-platform/predictor"])
    trimmed = ic.ImageSpec(
        tuple(c for c in spec.copies if not c[0].startswith("ml_platform")),
        spec.env,
        spec.workdir,
        spec.user,
        spec.runs,
    )
    gaps = ic.missing_from_image(["inference_service.promotion.__main__"], trimmed)
    assert "ml_platform.artifacts" in gaps


def _spark_python(app: dict, image_env: dict[str, str], role: str) -> str:
    """The interpreter Spark starts for `role`: spark.pyspark.* conf, then the app's env,
    then the image's ENV, then the Stackable image's default (Spark's own lookup order)."""
    conf = (app["spec"].get("sparkConf") or {}) | (
        (app["spec"].get(role) or {}).get("config", {}).get("sparkConf") or {}
    )
    env = {e["name"]: e.get("value") for e in app["spec"].get("env") or []}
    chain = [conf.get("spark.pyspark.python"), env.get("PYSPARK_PYTHON")]
    if role == "driver":
        chain = [conf.get("spark.pyspark.driver.python"), env.get("PYSPARK_DRIVER_PYTHON")] + chain
    chain += [image_env.get("PYSPARK_PYTHON"), STACKABLE_PYSPARK_PYTHON]
    return next(v for v in chain if v)


def _expand(word: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), m.group(0)), word).strip('"')


def _interpreter_of(run: str, env: dict[str, str], marker: str) -> str | None:
    """The program a RUN line starts right before `marker` (`-m pip install`, `-c "import`);
    a bare `pip install` is reported as "pip" (whichever interpreter that pip belongs to)."""
    if re.search(r"(^|&&|;)\s*pip3?\s+install", run):
        return "pip"
    found = re.search(r"(\S+)\s+" + re.escape(marker), run)
    return _expand(found.group(1), env) if found else None


@pytest.mark.parametrize("role", ["driver", "executor"])
def test_etl_packages_go_into_the_interpreter_spark_runs(rendered, role):
    spec = ic.parse_dockerfile(DOCKERFILES["ghcr.io/ml-platform/etl"])
    installs = [i for r in spec.runs if (i := _interpreter_of(r, spec.env, "-m pip install"))]
    assert installs, "the ETL Dockerfile installs no Python packages"
    for app in (o for o in rendered if o["kind"] == "SparkApplication"):
        assert set(installs) == {_spark_python(app, spec.env, role)}, validate.object_name(app)


def test_etl_build_imports_the_job_with_that_interpreter(rendered):
    spec = ic.parse_dockerfile(DOCKERFILES["ghcr.io/ml-platform/etl"])
    checks = [r for r in spec.runs if "import data_platform.etl_job" in r]
    assert checks, "no RUN imports data_platform.etl_job: a broken install would pass the build"
    app = next(o for o in rendered if o["kind"] == "SparkApplication")
    for run in checks:
        assert _interpreter_of(run, spec.env, '-c "import data_platform') == _spark_python(
            app, spec.env, "driver"
        )


def test_the_interpreter_check_sees_python3_pip():
    """Not vacuous: the old `python3 -m pip` is not the interpreter Spark runs."""
    old = 'python3 -m pip install --no-cache-dir "pydantic==2.14.3"'
    assert _interpreter_of(old, {}, "-m pip install") == "python3" != STACKABLE_PYSPARK_PYTHON


def test_etl_image_runs_as_the_base_images_user():
    assert ic.parse_dockerfile(DOCKERFILES["ghcr.io/ml-platform/etl"]).user == STACKABLE_UID


def _pins(words: list[str]) -> dict[str, str]:
    pins = (re.match(r"^([A-Za-z0-9_.-]+)==([\w.]+)$", w) for w in words)
    return {m.group(1).lower(): m.group(2) for m in pins if m}


def test_etl_pins_equal_the_spark35_test_environment_and_the_main_lock():
    spec = ic.parse_dockerfile(DOCKERFILES["ghcr.io/ml-platform/etl"])
    image = _pins([w.strip('"') for r in spec.runs if "pip install" in r for w in r.split()])
    project = tomllib.loads(SPARK35_PROJECT.read_text())["project"]["dependencies"]
    env = _pins(project)
    assert env.pop("pyspark").startswith("3.5.")
    assert image == env
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    locked = {p["name"]: p["version"] for p in lock["package"]}
    assert {k: locked[k] for k in image} == image
