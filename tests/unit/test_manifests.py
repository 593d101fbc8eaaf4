"""The GPU deployment files: every YAML parses, Kubernetes manifests and the compose file pass
their published schemas (offline copies shipped by kubernetes-validate and check-jsonschema),
and the pieces refer to each other consistently (selectors, names, ports, keys, paths)."""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from guards.concepts import load_concepts
from proxy.settings import ProxySettings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
PROXY = "nescio-proxy"

Resource = dict[str, Any]


def require(module: str) -> ModuleType:
    """Import a validator; skip locally without it, but fail under CI=true."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{module} is required in CI (it is in the project's [test] extra)")
        pytest.skip(f"{module} not installed: pip install -e '.[test]'")


def kustomization() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return data


def generated_configmaps() -> list[Resource]:
    """The ConfigMaps kustomize would generate (before its name-hash suffix)."""
    maps = []
    for generator in kustomization().get("configMapGenerator", []):
        data = {Path(f).name: (K8S / f).read_text() for f in generator.get("files", [])}
        maps.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"]},
                "data": data,
            }
        )
    return maps


def resources_in_kustomization() -> list[Resource]:
    docs: list[Resource] = []
    for name in kustomization()["resources"]:
        docs.extend(d for d in yaml.safe_load_all((K8S / name).read_text()) if d)
    return docs + generated_configmaps()


def find(kind: str, name: str) -> Resource:
    matches = [
        r
        for r in resources_in_kustomization()
        if r["kind"] == kind and r["metadata"]["name"] == name
    ]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def of_kind(kind: str) -> list[Resource]:
    return [r for r in resources_in_kustomization() if r["kind"] == kind]


def containers(deployment: Resource) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    return result


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def named_ports(deployment: Resource) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for c in containers(deployment) for p in c["ports"]}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def probes(deployment: Resource) -> Iterator[dict[str, Any]]:
    for container in containers(deployment):
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if kind in container:
                yield container[kind]


ALL_YAML = sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"})


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} holds no YAML document"


def test_kustomization_lists_every_manifest_and_nothing_missing() -> None:
    listed = set(kustomization()["resources"])
    generator_files = {f for g in kustomization().get("configMapGenerator", []) for f in g["files"]}
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"} - generator_files
    assert listed == on_disk
    assert all((K8S / f).is_file() for f in generator_files)


@pytest.mark.parametrize(
    "resource",
    resources_in_kustomization(),
    ids=lambda r: f"{r['kind']}/{r['metadata']['name']}",
)
def test_kubernetes_resource_passes_the_strict_schema(resource: Resource) -> None:
    kv = require("kubernetes_validate")
    try:
        kv.validate(resource, kv.latest_version(), strict=True)
    except kv.ValidationError as error:
        pytest.fail(f"{resource['kind']}/{resource['metadata']['name']}: {error}")


def test_compose_file_passes_the_compose_spec_schema() -> None:
    require("check_jsonschema")
    jsonschema = require("jsonschema")
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendor.joinpath("compose-spec.json").read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    errors = sorted(
        validator_class(schema).iter_errors(yaml.safe_load(COMPOSE.read_text())),
        key=lambda e: list(e.path),
    )
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_services_select_exactly_one_deployment_and_target_its_ports() -> None:
    deployments = of_kind("Deployment")
    for service in of_kind("Service"):
        selector = service["spec"]["selector"]
        targets = [
            d for d in deployments if selects(selector, d["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(targets) == 1, f"Service {service['metadata']['name']} selects {len(targets)}"
        ports = named_ports(targets[0])
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert target in ports or target in ports.values(), f"{target} not a container port"


def test_deployment_selectors_match_their_own_pod_labels() -> None:
    for deployment in of_kind("Deployment"):
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selects(selector, deployment["spec"]["template"]["metadata"]["labels"])


def test_probes_use_declared_ports_and_the_documented_paths() -> None:
    for deployment in of_kind("Deployment"):
        ports = named_ports(deployment)
        for probe in probes(deployment):
            port = probe["httpGet"]["port"]
            assert port in ports or port in ports.values()
    vllm = find("Deployment", "vllm")
    assert containers(vllm)[0]["readinessProbe"]["httpGet"]["path"] == "/health"
    proxy = find("Deployment", PROXY)
    assert containers(proxy)[0]["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert containers(proxy)[0]["livenessProbe"]["httpGet"]["path"] == "/health"


def test_vllm_requests_a_gpu() -> None:
    resources_ = containers(find("Deployment", "vllm"))[0]["resources"]
    assert int(resources_["limits"]["nvidia.com/gpu"]) >= 1


def test_hpa_scales_the_proxy_deployment_which_can_be_measured() -> None:
    hpas = of_kind("HorizontalPodAutoscaler")
    assert [h["apiVersion"] for h in hpas] == ["autoscaling/v2"]
    target = hpas[0]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", PROXY)
    proxy = find("Deployment", PROXY)
    assert proxy["spec"]["replicas"] >= 2
    assert hpas[0]["spec"]["minReplicas"] >= 2
    assert all("cpu" in c["resources"]["requests"] for c in containers(proxy))


def test_pod_disruption_budget_covers_the_proxy() -> None:
    (pdb,) = of_kind("PodDisruptionBudget")
    labels = find("Deployment", PROXY)["spec"]["template"]["metadata"]["labels"]
    assert selects(pdb["spec"]["selector"]["matchLabels"], labels)


def test_referenced_configmaps_and_secret_keys_exist() -> None:
    configmaps = {c["metadata"]["name"] for c in of_kind("ConfigMap")}
    secrets = {
        s["metadata"]["name"]: set(s.get("stringData", {})) | set(s.get("data", {}))
        for s in of_kind("Secret")
    }
    for deployment in of_kind("Deployment"):
        for volume in deployment["spec"]["template"]["spec"].get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps
        for container in containers(deployment):
            for value in env_of(container).values():
                if isinstance(value, dict) and "secretKeyRef" in value:
                    ref = value["secretKeyRef"]
                    assert ref["name"] in secrets, f"Secret {ref['name']} not defined"
                    assert ref["key"] in secrets[ref["name"]], f"key {ref['key']} not in Secret"


def test_proxy_reaches_vllm_through_its_service_port() -> None:
    env = env_of(containers(find("Deployment", PROXY))[0])
    upstream = urlsplit(env["NESCIO_UPSTREAM_URL"])
    service = find("Service", str(upstream.hostname))
    assert upstream.port in [p["port"] for p in service["spec"]["ports"]]


def test_proxy_concept_path_is_a_key_of_the_mounted_configmap() -> None:
    proxy = find("Deployment", PROXY)
    container = containers(proxy)[0]
    concepts_path = Path(env_of(container)["NESCIO_CONCEPTS_PATH"])
    volumes = {v["name"]: v for v in proxy["spec"]["template"]["spec"]["volumes"]}
    (mount,) = [
        m for m in container["volumeMounts"] if Path(m["mountPath"]) == concepts_path.parent
    ]
    configmap = find("ConfigMap", volumes[mount["name"]]["configMap"]["name"])
    assert concepts_path.name in configmap["data"]


def test_shipped_k8s_concept_list_is_valid() -> None:
    concepts = load_concepts(K8S / "concepts.yaml")
    assert concepts.concepts


def test_proxy_container_runs_as_non_root() -> None:
    spec = find("Deployment", PROXY)["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    user = re.search(r"^USER\s+(\S+)", DOCKERFILE.read_text(), re.M)
    assert user is not None and user.group(1).split(":")[0] not in {"0", "root"}
    assert int(user.group(1).split(":")[0]) == spec["securityContext"]["runAsUser"]


def test_dockerfile_health_check_port_and_copied_paths() -> None:
    text = DOCKERFILE.read_text()
    health = re.search(r"HEALTHCHECK.*?CMD (.*)$", text, re.S | re.M)
    assert health is not None and ":8080/health" in health.group(1)
    assert re.search(r"^EXPOSE 8080$", text, re.M)
    assert "NESCIO_PORT=8080" in text
    for source in re.findall(r"^COPY (?!--)(.+) \S+$", text, re.M):
        for path in source.split():
            assert (REPO / path).exists(), f"Dockerfile copies missing {path}"


def test_compose_wires_gpu_health_and_upstream() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    vllm, proxy = compose["services"]["vllm"], compose["services"]["proxy"]
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] and d["driver"] == "nvidia" for d in devices)
    assert "/health" in " ".join(vllm["healthcheck"]["test"])
    assert "/health" in " ".join(proxy["healthcheck"]["test"])
    assert proxy["depends_on"]["vllm"]["condition"] == "service_healthy"
    upstream = urlsplit(proxy["environment"]["NESCIO_UPSTREAM_URL"])
    assert upstream.hostname == "vllm"
    assert str(upstream.port) in vllm["command"]
    build = proxy["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    mount = next(v for v in proxy["volumes"] if v.endswith(":/etc/nescio:ro"))
    default_dir = re.fullmatch(r"\$\{[A-Z_]+:-([^}]+)\}:/etc/nescio:ro", mount)
    assert default_dir is not None
    concepts_file = Path(proxy["environment"]["NESCIO_CONCEPTS_PATH"]).name
    assert (COMPOSE.parent / default_dir.group(1) / concepts_file).is_file()


def test_prometheus_scrapes_the_proxys_metrics_port_and_shutdown_fits_the_grace_period() -> None:
    proxy = find("Deployment", PROXY)
    annotations = proxy["spec"]["template"]["metadata"]["annotations"]
    ports = [p["containerPort"] for p in containers(proxy)[0]["ports"]]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) in ports
    grace = proxy["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert ProxySettings().shutdown_grace < grace


def test_dockerfile_exports_the_encoder_where_the_runtime_reads_it() -> None:
    text = DOCKERFILE.read_text()
    built = re.search(r"NESCIO_ENCODER_CACHE=(\S+) \S*python -m guards\.onnx_encoder", text)
    runtime = text.split("\nFROM ")[-1]  # the final stage
    read = re.search(r"NESCIO_ENCODER_CACHE=(\S+)", runtime)
    assert built is not None and read is not None
    assert built.group(1) == read.group(1)
    assert f"COPY --from=build {built.group(1).rsplit('/', 1)[0]} " in runtime
