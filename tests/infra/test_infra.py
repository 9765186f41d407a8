"""infra/: every file parses and passes the checks of the system that reads it.

Ray's own cluster-config preparation and validation for the launcher YAML; the Kubernetes
OpenAPI schemas (kubernetes-validate, strict) for the Kubernetes manifests and, for the KubeRay
custom resources, KubeRay's API types (``kuberay-v1.schema.json``) plus Ray's own translation
of a RayCluster into an autoscaler config; the jobs' real argument parsers and ``mlflow
server``'s for every command the manifests run; DeepSpeed's own hostfile and launcher parsers.
Each validator is also shown a broken copy, which it must reject.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import io
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml
from dockerfile_parse import DockerfileParser
from kubernetes_validate.utils import schema_contents

from ltchm.config import LAMBDAS, load_config
from ltchm.paths import REPO_ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

INFRA = REPO_ROOT / "infra"
YAML_FILES = sorted(INFRA.rglob("*.yaml"))
K8S_FILES = sorted([*INFRA.glob("kuberay/*.yaml"), *INFRA.glob("mlflow/k8s/*.yaml")])
KUBERAY_SCHEMA = Path(__file__).with_name("kuberay-v1.schema.json")
# The oldest Kubernetes release the manifests are written for, and the newest one
# kubernetes-validate knows.
K8S_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
# Every instruction a Dockerfile may hold (https://docs.docker.com/reference/dockerfile/).
DOCKERFILE_INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}  # fmt: skip


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _k8s_objects() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in K8S_FILES for doc in _docs(path)]


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in _k8s_objects() if doc["kind"] == kind]


def _rayjob(name: str) -> dict[str, Any]:
    (job,) = [job for job in _of_kind("RayJob") if job["metadata"]["name"] == name]
    return job


def _pins() -> dict[str, str]:
    """constraints.txt as {normalised name: version}."""
    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def _project_version() -> str:
    with open(REPO_ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_yaml_file_parses(path: Path) -> None:
    docs = _docs(path)
    assert docs, f"{path} holds no document"
    assert all(isinstance(doc, dict) for doc in docs)


def test_infra_readme_names_every_file() -> None:
    readme = (INFRA / "README.md").read_text()
    files = [p for p in INFRA.rglob("*") if p.is_file() and p.name != "README.md"]
    assert files
    missing = [str(p.relative_to(INFRA)) for p in files if p.name not in readme]
    assert not missing, f"infra/README.md does not explain {missing}"


# --- Ray cluster launcher ---------------------------------------------------------------------


def _ray_check(config: dict[str, Any]) -> dict[str, Any]:
    """What ``ray up`` does to a config before it calls the cloud: fill in the provider's
    defaults, then validate against Ray's bundled schema and its own consistency rules."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def _launcher_config() -> dict[str, Any]:
    (config,) = _docs(INFRA / "ray" / "cluster.yaml")
    return config


def _unpinned_installs(prepared: dict[str, Any]) -> list[str]:
    """Setup commands that install Ray or an unpinned package into the image's environment."""
    bad = []
    for key in ("setup_commands", "head_setup_commands", "worker_setup_commands"):
        for command in prepared[key]:
            words = shlex.split(command)
            if "install" not in words:
                continue
            packages = [w for w in words[words.index("install") + 1 :] if not w.startswith("-")]
            if not packages or any("==" not in p or p.startswith("ray") for p in packages):
                bad.append(command)
    return bad


def test_ray_cluster_yaml_passes_rays_validation() -> None:
    config = _ray_check(_launcher_config())
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert any(t["resources"].get("GPU", 0) > 0 for t in workers), "no GPU node type"
    assert any(t["resources"].get("GPU", 0) == 0 for t in workers), "no CPU-only node type"
    assert all(t["max_workers"] > 0 for t in workers)
    assert _unpinned_installs(config) == []
    mounts = " ".join(config["docker"]["run_options"])
    assert ":/data" in mounts, "the shared /data volume is not mounted into the containers"


def test_setup_commands_left_out_bring_back_rays_defaults() -> None:
    # Ray merges the file over its provider defaults key by key: without setup_commands the
    # defaults' `pip install -U "ray[default] @ <nightly wheel>"` would run on every node.
    config = _launcher_config()
    del config["setup_commands"]
    assert _unpinned_installs(_ray_check(config))


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda c: c.update(max_worker=4), "Additional properties"),  # misspelt key
        (lambda c: c.update(head_node_type="no-such-type"), "head_node_type"),
        (lambda c: c["available_node_types"]["gpu_worker"].pop("node_config"), "node_config"),
        (lambda c: c["available_node_types"]["gpu_worker"].update(min_workers=50), "max_workers"),
        (lambda c: c["docker"].update(runoptions=[]), "Additional properties"),
    ],
    ids=["unknown-key", "head-type", "node-config", "min-workers", "docker-key"],
)
def test_ray_validation_rejects_a_broken_copy(mutate, error: str) -> None:
    config = _launcher_config()
    mutate(config)
    with pytest.raises((jsonschema.ValidationError, ValueError)) as exc:
        _ray_check(config)
    assert error in str(exc.value)


# --- Kubernetes and KubeRay schemas -----------------------------------------------------------


def _kuberay_validator(kind: str, k8s_version: str) -> jsonschema.Draft202012Validator:
    """KubeRay's types over the Kubernetes definitions of ``k8s_version`` (strict)."""
    minor = kubernetes_validate.utils.major_minor(k8s_version)
    version = [
        v
        for v in kubernetes_validate.utils.all_versions()
        if kubernetes_validate.utils.major_minor(v) == minor
    ][-1]
    definitions = schema_contents(
        f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", version
    )
    ours = json.loads(KUBERAY_SCHEMA.read_text())
    registry = referencing.Registry().with_resources(
        [
            (definitions["$id"], referencing.Resource.from_contents(definitions)),
            (ours["$id"], referencing.Resource.from_contents(ours)),
        ]
    )
    return jsonschema.Draft202012Validator(
        {"$ref": f"{ours['$id']}#/$defs/{kind}"}, registry=registry
    )


def _k8s_validate(doc: dict[str, Any], k8s_version: str) -> None:
    if doc["apiVersion"].startswith("ray.io/"):
        _kuberay_validator(doc["kind"], k8s_version).validate(doc)
    else:
        kubernetes_validate.validate(doc, k8s_version, strict=True)


@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
@pytest.mark.parametrize("path", K8S_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_kubernetes_manifests_match_their_schemas(path: Path, k8s_version: str) -> None:
    for doc in _docs(path):
        _k8s_validate(doc, k8s_version)
        name = doc["metadata"]["name"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63, name


def _container(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize(
    ("file", "mutate"),
    [
        # rayStartParams is map[string]string: a bare number is the classic mistake.
        (
            "kuberay/raycluster.yaml",
            lambda d: d["spec"]["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}),
        ),
        ("kuberay/raycluster.yaml", lambda d: d["spec"]["workerGroupSpecs"][0].pop("maxReplicas")),
        ("kuberay/rayjob-train.yaml", lambda d: d["spec"].update(entryPoint="python x.py")),
        ("kuberay/rayjob-train.yaml", lambda d: d["spec"].update(submissionMode="K8sJob")),
        ("kuberay/rayjob-train.yaml", lambda d: _container(d).update(volumeMount=[])),
        ("kuberay/rayjob-preprocess.yaml", lambda d: _container(d).update(image=["x"])),
        ("mlflow/k8s/mlflow.yaml", lambda d: d["spec"].update(replicas="1")),
        ("kuberay/storage.yaml", lambda d: d["spec"].update(accessMode=["ReadWriteMany"])),
    ],
    ids=[
        "int-start-param",
        "no-max-replicas",
        "misspelt-entrypoint",
        "bad-submission-mode",
        "misspelt-pod-field",
        "image-not-string",
        "replicas-string",
        "misspelt-pvc-field",
    ],
)
def test_kubernetes_validation_rejects_a_broken_copy(file: str, mutate) -> None:
    doc = _docs(INFRA / file)[0]
    _k8s_validate(doc, K8S_VERSIONS[0])  # the original passes ...
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError):  # ... the broken copy does not
        _k8s_validate(doc, K8S_VERSIONS[0])


def _cluster_specs() -> dict[str, dict[str, Any]]:
    specs = {doc["metadata"]["name"]: doc["spec"] for doc in _of_kind("RayCluster")}
    specs |= {doc["metadata"]["name"]: doc["spec"]["rayClusterSpec"] for doc in _of_kind("RayJob")}
    return specs


def _autoscaler_config(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Ray's own reading of a RayCluster (what its autoscaler does in the head pod); it ends
    with Ray's validate_config."""
    from ray.autoscaler._private.kuberay.autoscaling_config import (
        _derive_autoscaling_config_from_ray_cr,
    )

    return _derive_autoscaling_config_from_ray_cr(
        {"metadata": {"name": name, "namespace": "ltchm"}, "spec": copy.deepcopy(spec)}
    )


def test_ray_reads_every_kuberay_cluster() -> None:
    specs = _cluster_specs()
    assert set(specs) == {
        "ltchm",
        "ltchm-preprocess",
        "ltchm-train",
        "ltchm-compress-scenes",
    }
    ray_pin = _pins()["ray"]
    for name, spec in specs.items():
        assert spec["rayVersion"] == ray_pin, f"{name}: rayVersion is not the image's Ray"
        types = _autoscaler_config(name, spec)["available_node_types"]
        assert types["headgroup"]["resources"]["CPU"] == 0, f"{name}: tasks would run on the head"
        for group, node in types.items():
            assert node["resources"].get("memory", 0) > 0, f"{name}/{group}: no memory limit"
    gpu = _autoscaler_config("ltchm-train", specs["ltchm-train"])["available_node_types"]["gpu"]
    assert gpu["resources"]["GPU"] == 4


def test_ray_rejects_a_broken_kuberay_cluster() -> None:
    spec = copy.deepcopy(_cluster_specs()["ltchm-train"])
    spec["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limits"][
        "nvidia.com/gpu"
    ] = "four"
    with pytest.raises(ValueError):
        _autoscaler_config("broken", spec)


def test_one_image_and_version_everywhere() -> None:
    image = f"ghcr.io/your-org/ltchm:{_project_version()}"
    assert _launcher_config()["docker"]["image"] == image
    for name, spec in _cluster_specs().items():
        groups = [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]
        for group in groups:
            pod = group["template"]["spec"]
            assert [c["image"] for c in pod["containers"]] == [image], name
            mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            # Every Ray pod sees the shared volume at /data, and Ray gets a real /dev/shm.
            claim = volumes[mounts["/data"]]["persistentVolumeClaim"]["claimName"]
            assert claim == _of_kind("PersistentVolumeClaim")[0]["metadata"]["name"], name
            assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory", name
    # MLflow server = MLflow client: the server image, its Dockerfile and constraints.txt.
    mlflow_pin = _pins()["mlflow"]
    (deployment,) = _of_kind("Deployment")
    server_image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert server_image.endswith(f":{mlflow_pin}")
    dockerfile = (INFRA / "mlflow" / "Dockerfile").read_text()
    assert f"ARG MLFLOW_VERSION={mlflow_pin}\n" in dockerfile


# --- the commands the manifests run -----------------------------------------------------------


class _Caught(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def _job_parser(module: str) -> argparse.ArgumentParser:
    """The argparse parser a job's ``main(argv)`` builds, caught before it parses anything."""
    job = importlib.import_module(module)

    def catch(self, args=None, namespace=None):
        raise _Caught(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(argparse.ArgumentParser, "parse_args", catch)
        with pytest.raises(_Caught) as caught:
            job.main([])
    return caught.value.parser


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"{parser.prog} rejects {argv} (see stderr)") from exc


def _entrypoint(job: str) -> tuple[str, list[str]]:
    argv = shlex.split(_rayjob(job)["spec"]["entrypoint"])
    assert argv[:2] == ["python", "-m"], argv
    return argv[2], argv[3:]


@pytest.mark.parametrize(
    ("job", "module"),
    [("ltchm-preprocess", "jobs.preprocess"), ("ltchm-train", "jobs.train")],
)
def test_rayjob_commands_parse_with_the_jobs_own_parsers(job: str, module: str) -> None:
    name, argv = _entrypoint(job)
    assert name == module
    parser = _job_parser(module)
    _parse(parser, argv)
    with pytest.raises(AssertionError, match="rejects"):  # the same parser can say no
        _parse(parser, [*argv, "--no-such-option"])


def test_the_jobs_pass_data_and_services_along() -> None:
    _, pre = _entrypoint("ltchm-preprocess")
    _, train = _entrypoint("ltchm-train")
    pre_args = _parse(_job_parser("jobs.preprocess"), pre)
    train_args = _parse(_job_parser("jobs.train"), train)
    assert train_args.shards == pre_args.out  # training reads the shards preprocessing wrote
    assert train_args.lambdas == "all" and train_args.gpu
    paths = [*pre_args.inputs, pre_args.out, train_args.shards, train_args.out]
    assert all(Path(p).is_relative_to("/data") for p in paths), paths  # on the shared volume
    # The tracking URI is the MLflow Service.
    (service,) = _of_kind("Service")
    port = service["spec"]["ports"][0]["port"]
    assert train_args.tracking_uri == f"http://{service['metadata']['name']}:{port}"
    # Ray Train places one rank per GPU: a GPU pod holds a whole number of rate points.
    pod = _cluster_specs()["ltchm-train"]["workerGroupSpecs"][0]["template"]["spec"]
    gpus = int(pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
    assert gpus % train_args.workers == 0


def test_scene_job_command() -> None:
    # jobs.compress_scenes takes INPUT... --model SPEC --out DIR; checked by shape only, so
    # that this file does not depend on the scene job's import.
    module, argv = _entrypoint("ltchm-compress-scenes")
    assert module == "jobs.compress_scenes"
    first_option = next(i for i, a in enumerate(argv) if a.startswith("--"))
    inputs, options = argv[:first_option], argv[first_option:]
    assert inputs and all(Path(p).is_relative_to("/data") for p in inputs)
    values = dict(zip(options[::2], options[1::2], strict=True))
    assert set(values) == {"--model", "--out"}
    assert Path(values["--out"]).is_relative_to("/data")
    registered = load_config(None).tracking.registered_model
    match = re.fullmatch(rf"models:/{registered}-lambda(\d+)@champion", values["--model"])
    assert match and int(match.group(1)) in LAMBDAS, values["--model"]


# --- MLflow server ----------------------------------------------------------------------------


def _mlflow_server_params(argv: list[str]) -> dict[str, Any]:
    """``mlflow server``'s own click parser applied to ``argv`` (the server is not started)."""
    from mlflow.cli import server

    assert argv[:2] == ["mlflow", "server"], argv
    with server.make_context("mlflow server", list(argv[2:])) as ctx:
        return ctx.params


def test_mlflow_deployment_runs_a_valid_server_command() -> None:
    (deployment,) = _of_kind("Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    params = _mlflow_server_params([*container["command"], *container["args"]])
    assert params["serve_artifacts"]
    assert params["artifacts_destination"].startswith("s3://")
    assert params["host"] == "0.0.0.0" and params["port"] == 5000
    # MLflow's own Host-header check lets in the Service's names and port-forwarding only.
    from mlflow.server.security_utils import is_allowed_host_header

    allowed = params["allowed_hosts"].split(",")
    for host in ("mlflow:5000", "mlflow.ltchm.svc.cluster.local:5000", "localhost:5000"):
        assert is_allowed_host_header(allowed, host), host
    for host in ("attacker.example:5000", "mlflowx:5000", "mlflow.attacker.example"):
        assert not is_allowed_host_header(allowed, host), host
    # The database URI (with its password) comes from a Secret, never from the manifest.
    env = {e["name"]: e for e in container["env"]}
    ref = env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]
    (secret,) = _of_kind("Secret")
    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    assert secret["stringData"]["backend-store-uri"].startswith("postgresql")
    probe = container["readinessProbe"]["httpGet"]["path"]
    assert probe == "/health"  # exempt from MLflow's Host-header check


def test_mlflow_server_parser_rejects_a_bad_option() -> None:
    import click

    with pytest.raises(click.UsageError):
        _mlflow_server_params(["mlflow", "server", "--artifact-destination=s3://x"])


def test_docker_compose_alternative() -> None:
    compose = _docs(INFRA / "mlflow" / "docker-compose.yaml")[0]
    services = compose["services"]
    assert {"postgres", "minio", "mlflow"} <= set(services)
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        assert set(service.get("depends_on", {})) <= set(services), name
        named = {v.split(":")[0] for v in service.get("volumes", [])}
        assert named <= set(compose.get("volumes", {})), f"{name}: undeclared volume"
    mlflow = services["mlflow"]
    # no authentication of its own: published on loopback unless the operator says otherwise
    assert mlflow["ports"] == ["${MLFLOW_PUBLISH:-127.0.0.1}:5000:5000"]
    assert all(
        p.startswith(("127.0.0.1:", "${")) for s in services.values() for p in s.get("ports", [])
    )
    assert mlflow["image"].endswith(f":{_pins()['mlflow']}")
    params = _mlflow_server_params(mlflow["command"])
    assert params["serve_artifacts"] and params["artifacts_destination"].startswith("s3://")
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql")
    # Secrets come from .env (compose fails fast on a missing one); .env.example lists them all.
    text = (INFRA / "mlflow" / "docker-compose.yaml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    example = (INFRA / "mlflow" / ".env.example").read_text()
    listed = set(re.findall(r"^(\w+)=", example, re.M))
    assert required and required <= listed
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith(
        "${POSTGRES_PASSWORD:?"
    )


# --- Dockerfiles ------------------------------------------------------------------------------


def _bootstrap_packages() -> dict[str, str]:
    """scripts/bootstrap.sh's SYSTEM_PACKAGES: {apt package: command that proves it}."""
    text = (REPO_ROOT / "scripts" / "bootstrap.sh").read_text()
    block = re.search(r"SYSTEM_PACKAGES=\((.*?)\n\)", text, re.S)
    assert block, "SYSTEM_PACKAGES not found in scripts/bootstrap.sh"
    return dict(re.findall(r"\[([\w.+-]+)\]=(\S+)", block.group(1)))


def _apt_packages(runs: list[str]) -> set[str]:
    packages = set()
    for run in runs:
        for step in re.split(r"&&|;|\|\|", run):
            words = step.split()
            if "apt-get" in words and "install" in words:
                rest = words[words.index("install") + 1 :]
                packages |= {w for w in rest if not w.startswith("-")}
    return packages


def dockerfile_problems(text: str) -> list[str]:
    """What is wrong with the project image's Dockerfile; empty when nothing is."""
    parsed = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    structure = parsed.structure
    problems = [
        f"line {i['startline'] + 1}: unknown instruction {i['instruction']}"
        for i in structure
        if i["instruction"] not in DOCKERFILE_INSTRUCTIONS | {"COMMENT"}
    ]
    if not (parsed.baseimage or "").startswith("nvidia/cuda:"):
        problems.append(f"base image {parsed.baseimage!r} is not a CUDA image")
    runs = [i["value"] for i in structure if i["instruction"] == "RUN"]
    if not any(re.search(r"pip install -c constraints\.txt -r ", r) for r in runs):
        problems.append("the dependencies are not installed with -c constraints.txt")
    if not any(re.search(r"pip install -c constraints\.txt -e \.", r) for r in runs):
        problems.append("the project is not installed with -c constraints.txt")
    wanted = _bootstrap_packages()
    if missing := set(wanted) - _apt_packages(runs):
        problems.append(f"apt packages of scripts/bootstrap.sh not installed: {sorted(missing)}")
    checked = {
        w for r in runs for m in re.finditer(r"for tool in ([^;]+);", r) for w in m[1].split()
    }
    if checked != set(wanted.values()):
        problems.append(
            f"the build checks {sorted(checked)}, bootstrap.sh {sorted(wanted.values())}"
        )
    users = [i["value"].split(":")[0] for i in structure if i["instruction"] == "USER"]
    if not users or users[-1] in ("root", "0"):
        problems.append("the image runs as root")
    if "ray" not in users[-1:]:
        problems.append("KubeRay and the cluster launcher expect the user ray")
    return problems


def test_project_dockerfile() -> None:
    text = (INFRA / "docker" / "Dockerfile").read_text()
    assert dockerfile_problems(text) == []
    # Everything the Dockerfile copies in from the repository root exists.
    parsed = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    for instruction in parsed.structure:
        if instruction["instruction"] == "COPY":
            sources = [w for w in instruction["value"].split()[:-1] if not w.startswith("--")]
            assert all((REPO_ROOT / s).exists() for s in sources), instruction["value"]


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda t: t.replace("\nFROM ", "\nFORM "), "unknown instruction FORM"),
        (lambda t: t.replace("=nvidia/cuda:13.0.1-base-ubuntu24.04", "=ubuntu:24.04"), "CUDA"),
        (lambda t: t.replace("webp libavif-bin x265", "webp x265"), "libavif-bin"),
        (lambda t: t.replace("cwebp avifenc x265", "cwebp x265"), "the build checks"),
        (lambda t: t.replace("-c constraints.txt -e .", "-e ."), "project is not installed"),
        (lambda t: t.replace("USER ray", "USER root"), "runs as root"),
    ],
    ids=["instruction", "base", "apt-package", "tool-check", "constraints", "root"],
)
def test_dockerfile_check_rejects_a_broken_copy(edit, problem: str) -> None:
    text = (INFRA / "docker" / "Dockerfile").read_text()
    broken = edit(text)
    assert broken != text
    assert any(problem in p for p in dockerfile_problems(broken)), dockerfile_problems(broken)


def test_dockerignore_keeps_what_the_image_needs() -> None:
    ignored = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ".venv" in ignored and ".git" in ignored
    assert "**/.env" in ignored  # the MLflow passwords never reach an image
    for needed in ("ltchm", "jobs", "pipeline", "configs", "samples", "pyproject.toml"):
        assert needed not in ignored


# --- DeepSpeed --------------------------------------------------------------------------------


def test_deepspeed_hostfile_and_launch_command() -> None:
    from deepspeed.launcher.runner import _parse_hostfile, fetch_hostfile, parse_args

    path = INFRA / "deepspeed" / "hostfile.example"
    pool = fetch_hostfile(str(path))  # DeepSpeed's own parser
    assert pool and all(slots > 0 for slots in pool.values())
    # The command in the file's comment parses with DeepSpeed's launcher.
    (line,) = [ln for ln in path.read_text().splitlines() if ln.startswith("#   deepspeed ")]
    argv = shlex.split(line.lstrip("# "))[1:]
    args = parse_args(argv)
    assert (REPO_ROOT / args.hostfile).resolve() == path.resolve()
    assert args.module and args.user_script == "jobs.train_deepspeed"
    _parse(_job_parser(args.user_script), args.user_args)  # the module's own options
    # ... and both parsers can say no.
    with pytest.raises(ValueError):
        _parse_hostfile(["gpu-node-0 slots=eight"])
    with pytest.raises(SystemExit):
        parse_args(["--hostfile", str(path), "-m", "jobs.train_deepspeed"])
