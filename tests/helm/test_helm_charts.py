"""The Helm charts (helm/konsil-control, helm/konsil-region) rendered for their example
values with Helm's own library, linted, every manifest validated against the Kubernetes
API schemas offline, and the rules of an operable, private install checked on the objects:
a region release knows its own region only, secrets come by reference only, pods run
locked down, and bad values fail with a message that says what is wrong."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import helm_python as helm
import kubernetes_validate
import msgspec
import pytest
import tomli_w

from konsil.media_nodes.agent_settings import agent_settings
from konsil.platform.cli.main import parser as cli_parser
from konsil.platform.core.config import read_config
from konsil.platform.core.liveness import TOUCH_EVERY_SECONDS
from konsil.platform.core.settings import (
    ControlPlaneSettings,
    Settings,
    load_control_settings,
    load_settings,
)
from konsil.platform.core.telemetry.config import TelemetrySettings
from tests.helm.charts import (
    CONTROL_CHART,
    KUBE_VERSION,
    REGION_CHART,
    Render,
    kn,
    lint,
    render,
    values_of,
)

REGIONS = ("eu", "us")
CONTROL_EXAMPLE = CONTROL_CHART / "values-example.yaml"


def region_values(region: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return values_of(REGION_CHART / f"values-{region}.yaml", overrides=overrides)


def render_region(region: str, overrides: Mapping[str, Any] | None = None) -> Render:
    return render(REGION_CHART, region_values(region, overrides), f"konsil-{region}", f"konsil-{region}")


def render_control(overrides: Mapping[str, Any] | None = None) -> Render:
    return render(CONTROL_CHART, values_of(CONTROL_EXAMPLE, overrides=overrides), "konsil-control", "konsil-control")


@pytest.fixture(scope="module")
def renders() -> dict[str, Render]:
    return {"control": render_control(), **{region: render_region(region) for region in REGIONS}}


ALL = ("control", *REGIONS)


# --- lint and schema validation ---------------------------------------------------------


@pytest.mark.parametrize(
    ("chart", "values_file"),
    [
        (CONTROL_CHART, CONTROL_EXAMPLE),
        (REGION_CHART, REGION_CHART / "values-eu.yaml"),
        (REGION_CHART, REGION_CHART / "values-us.yaml"),
    ],
    ids=["control", "region-eu", "region-us"],
)
def test_helm_lint_strict_finds_nothing_above_info(chart: Path, values_file: Path) -> None:
    report = lint(chart, values_of(values_file))
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    # Severity 1 is INFO ("icon is recommended"); 2 WARNING and 3 ERROR must not occur.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_lint_reports_helms_own_message_for_a_chart_without_required_values() -> None:
    report = lint(REGION_CHART, {})
    assert report["errors"], report
    assert "missing properties 'id', 'jurisdiction', 'publicUrl', 'ownHosts'" in "\n".join(report["errors"])


@pytest.mark.parametrize("which", ALL)
def test_every_manifest_validates_against_the_kubernetes_schemas(renders: dict[str, Render], which: str) -> None:
    objects = renders[which].objects
    assert len(objects) >= 8
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{kn(obj)} does not validate against Kubernetes {KUBE_VERSION}: {path}: {exc.message}")


def test_pod_monitor_scrapes_worker_beat_and_media_nodes_with_the_service_monitor_switch(
    renders: dict[str, Render],
) -> None:
    # A CRD: kubernetes-validate has no schema for it, so it is off by default (the
    # validated renders hold none) and its shape is checked here.
    for which in ALL:
        assert not renders[which].of_kind("PodMonitor")
    rendered = render_region("eu", {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}})
    [monitor] = rendered.of_kind("PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    selector = monitor["spec"]["selector"]
    [expression] = selector["matchExpressions"]
    assert expression["key"] == "app.kubernetes.io/component" and expression["operator"] == "In"
    selected = []
    for obj, pod in rendered.pod_specs():
        labels = obj["spec"]["template"]["metadata"]["labels"]
        if selector["matchLabels"].items() <= labels.items() and labels[expression["key"]] in expression["values"]:
            selected.append(labels[expression["key"]])
            [container] = pod["containers"]
            assert "metrics" in {p["name"] for p in container["ports"]}, kn(obj)
    assert sorted(selected) == ["beat", "media-node", "worker"]
    without_nodes = render_region("eu", {"serviceMonitor": {"enabled": True}, "mediaNodes": {"enabled": False}})
    [monitor] = without_nodes.of_kind("PodMonitor")
    assert monitor["spec"]["selector"]["matchExpressions"][0]["values"] == ["worker", "beat"]
    assert not render_control({"serviceMonitor": {"enabled": True}}).of_kind("PodMonitor")


def test_service_monitor_is_off_by_default_and_scrapes_the_metrics_port(renders: dict[str, Render]) -> None:
    for which in ALL:
        assert not renders[which].of_kind("ServiceMonitor")
    for rendered in (
        render_region("eu", {"serviceMonitor": {"enabled": True}}),
        render_control({"serviceMonitor": {"enabled": True}}),
    ):
        [monitor] = rendered.of_kind("ServiceMonitor")
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
        selected = monitor["spec"]["selector"]["matchLabels"]
        [service] = [s for s in rendered.of_kind("Service") if selected.items() <= s["metadata"]["labels"].items()]
        assert {"name": "metrics", "port": 9464, "targetPort": "metrics", "protocol": "TCP"} in service["spec"]["ports"]


# --- the workloads -----------------------------------------------------------------------


@pytest.mark.parametrize("region", REGIONS)
def test_region_service_has_two_replicas_an_autoscaler_and_a_disruption_budget(
    renders: dict[str, Render], region: str
) -> None:
    rendered = renders[region]
    name = f"konsil-{region}-region"
    deployment = rendered.named("Deployment", name)
    # The autoscaler owns the count (Kubernetes' advice): a replicas field would reset it
    # at every upgrade. Without autoscaling the Deployment says 2 or more itself.
    assert "replicas" not in deployment["spec"]
    fixed = render_region(region, {"regionService": {"autoscaling": {"enabled": False}}})
    assert fixed.named("Deployment", name)["spec"]["replicas"] >= 2
    assert not fixed.of_kind("HorizontalPodAutoscaler")
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    hpa = rendered.named("HorizontalPodAutoscaler", name)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["maxReplicas"] >= hpa["spec"]["minReplicas"]
    pdb = rendered.named("PodDisruptionBudget", name)
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] >= 1
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["serve", "region", "--region", region, "--config", "/etc/konsil/konsil.toml"]


@pytest.mark.parametrize("region", REGIONS)
def test_one_beat_and_a_worker_deployment(renders: dict[str, Render], region: str) -> None:
    rendered = renders[region]
    beat = rendered.named("Deployment", f"konsil-{region}-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert beat["spec"]["template"]["spec"]["containers"][0]["args"][:3] == ["beat", "--region", region]
    worker = rendered.named("Deployment", f"konsil-{region}-worker")
    assert worker["spec"]["replicas"] >= 1
    assert worker["spec"]["template"]["spec"]["containers"][0]["args"][:3] == ["worker", "--region", region]
    beats = [
        d for d in rendered.of_kind("Deployment") if d["spec"]["template"]["spec"]["containers"][0]["args"][0] == "beat"
    ]
    assert len(beats) == 1


@pytest.mark.parametrize("region", REGIONS)
def test_media_nodes_run_on_the_host_network_with_their_relay_ports(renders: dict[str, Render], region: str) -> None:
    rendered = renders[region]
    daemon = rendered.named("DaemonSet", f"konsil-{region}-media-node")
    pod = daemon["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    [container] = pod["containers"]
    assert container["image"].endswith("konsil-media-node:0.1.0")
    ports = {(p["containerPort"], p["protocol"], p.get("hostPort")) for p in container["ports"]}
    assert ports == {(3478, "UDP", 3478), (3478, "TCP", 3478), (5349, "TCP", 5349), (9464, "TCP", 9464)}
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"] == 9464
    args = container["args"]
    assert args[:4] == ["media-node", "run", "--region", region]

    def arg(flag: str) -> str:
        value: str = args[args.index(flag) + 1]
        return value

    assert (arg("--min-port"), arg("--max-port"), arg("--port"), arg("--tls-port")) == (
        "49152",
        "65535",
        "3478",
        "5349",
    )
    assert arg("--node-id") == "$(NODE_NAME)"
    assert arg("--public-host") == f"$(NODE_NAME).turn.{region}.konsil.example"
    assert arg("--workdir").startswith("/tmp/")
    # The node's own configuration: no database, no Transit, no internal secret.
    config = tomllib.loads(rendered.named("ConfigMap", f"konsil-{region}-media-node")["data"]["konsil.toml"])
    assert config["regions"][0].keys() == {"id", "vault"}
    assert "mount" not in config["regions"][0]["vault"]
    assert {e["name"] for e in container["env"]} == {
        "KONSIL_CONFIG",
        "NODE_NAME",
        "NODE_BROKER_PASSWORD",
        f"KONSIL_REGIONS__{region.upper()}__BROKER_URL",
        f"KONSIL_REGIONS__{region.upper()}__MEDIA_NODE_KEY",
    }


def secret_keys(container: Mapping[str, Any]) -> set[str]:
    return {e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}


@pytest.mark.parametrize("region", REGIONS)
def test_media_nodes_log_in_to_rabbitmq_with_their_own_user_never_the_regions(
    renders: dict[str, Render], region: str
) -> None:
    rendered = renders[region]
    values = rendered.values
    [node] = rendered.named("DaemonSet", f"konsil-{region}-media-node")["spec"]["template"]["spec"]["containers"]
    keys = secret_keys(node)
    # The region user's password (full rights on the vhost, the Celery queues included)
    # never reaches a node; the nodes' own password never reaches the region's pods.
    assert values["secretKeys"]["brokerPassword"] not in keys
    assert keys == {"media-node-broker-password", "media-node-key"}
    broker = urlsplit(pod_environment(node)[f"KONSIL_REGIONS__{region.upper()}__BROKER_URL"])
    assert broker.username == f"konsil-{region}-nodes" != values["rabbitmq"]["user"]
    assert broker.password == "test-media-node-broker-password-0123456789abcdef"
    for where, container in containers(rendered):
        if where.startswith("DaemonSet/"):
            continue
        assert "media-node-broker-password" not in secret_keys(container), where


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mediaNodes": {"rabbitmq": {"user": None}}}, "mediaNodes.rabbitmq.user is required while mediaNodes.enabled"),
        ({"mediaNodes": {"rabbitmq": {"user": "konsil-eu"}}}, "mediaNodes.rabbitmq.user must not be rabbitmq.user"),
        ({"mediaNodes": {"metricsPort": 3478}}, "mediaNodes.metricsPort 3478 clashes with coturn's ports"),
        ({"mediaNodes": {"metricsPort": 5349}}, "mediaNodes.metricsPort 5349 clashes with coturn's ports"),
        ({"mediaNodes": {"metricsPort": 50000}}, "mediaNodes.metricsPort 50000 clashes with coturn's ports"),
    ],
)
def test_media_node_login_and_metrics_port_mistakes_fail_to_render(overrides: dict[str, Any], message: str) -> None:
    values = region_values("eu", overrides)
    if values["mediaNodes"]["rabbitmq"]["user"] is None:
        del values["mediaNodes"]["rabbitmq"]["user"]
    with pytest.raises(helm.HelmRenderError) as caught:
        render(REGION_CHART, values, "konsil-eu", "konsil-eu")
    assert message in str(caught.value)


def test_media_node_metrics_port_is_configurable() -> None:
    rendered = render_region("eu", {"mediaNodes": {"metricsPort": 9465}})
    [node] = rendered.named("DaemonSet", "konsil-eu-media-node")["spec"]["template"]["spec"]["containers"]
    assert {"name": "metrics", "containerPort": 9465, "hostPort": 9465, "protocol": "TCP"} in node["ports"]
    config = tomllib.loads(rendered.named("ConfigMap", "konsil-eu-media-node")["data"]["konsil.toml"])
    assert config["telemetry"]["metrics_listen"] == "0.0.0.0:9465"
    # The pods' own metrics port does not move with it.
    region_config = tomllib.loads(rendered.named("ConfigMap", "konsil-eu")["data"]["konsil.toml"])
    assert region_config["telemetry"]["metrics_listen"] == "0.0.0.0:9464"


@pytest.mark.parametrize("which", ALL)
def test_telemetry_sampling_timeout_and_queue_are_chart_values(which: str) -> None:
    telemetry = {"traceSampleRatio": 0.25, "exportTimeoutSeconds": 5, "maxQueueSpans": 8192}
    rendered = (
        render_control({"telemetry": telemetry})
        if which == "control"
        else render_region(which, {"telemetry": telemetry})
    )
    config_maps = rendered.of_kind("ConfigMap")
    assert len(config_maps) >= (1 if which == "control" else 2)
    for config_map in config_maps:
        raw = tomllib.loads(config_map["data"]["konsil.toml"])["telemetry"]
        settings = msgspec.convert(raw, TelemetrySettings)
        assert (settings.trace_sample_ratio, settings.export_timeout_seconds, settings.max_queue_spans) == (
            0.25,
            5.0,
            8192,
        ), kn(config_map)
        assert settings.log_format == "json"
    # The chart's defaults are the code's own.
    defaults = TelemetrySettings()
    plain = render_control() if which == "control" else render_region(which)
    for config_map in plain.of_kind("ConfigMap"):
        raw = tomllib.loads(config_map["data"]["konsil.toml"])["telemetry"]
        assert raw["trace_sample_ratio"] == defaults.trace_sample_ratio, kn(config_map)
        assert raw["export_timeout_seconds"] == defaults.export_timeout_seconds, kn(config_map)
        assert raw["max_queue_spans"] == defaults.max_queue_spans, kn(config_map)


@pytest.mark.parametrize("chart", ["control", "eu"])
def test_a_trace_sample_ratio_above_one_is_refused(chart: str) -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        if chart == "control":
            render_control({"telemetry": {"traceSampleRatio": 1.5}})
        else:
            render_region(chart, {"telemetry": {"traceSampleRatio": 1.5}})
    assert "at '/telemetry/traceSampleRatio': maximum: got 1.5, want 1" in str(caught.value)


@pytest.mark.parametrize("region", REGIONS)
def test_worker_and_beat_have_a_liveness_probe_konsil_understands(renders: dict[str, Render], region: str) -> None:
    for kind, extra in (("worker", ["--max-task-seconds", "21600"]), ("beat", [])):
        deployment = renders[region].named("Deployment", f"konsil-{region}-{kind}")
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        probe = container["livenessProbe"]
        command = probe["exec"]["command"]
        assert command == [
            "konsil",
            "alive",
            kind,
            "--region",
            region,
            "--config",
            "/etc/konsil/konsil.toml",
            "--max-age",
            "90",
            *extra,
        ]
        args = cli_parser().parse_args(command[1:])
        assert (args.kind, args.region, args.max_age) == (kind, region, 90.0)
        # Well above the 10 s between touches, and the probe's own start-up fits its timeout.
        assert args.max_age >= 3 * TOUCH_EVERY_SECONDS
        assert probe["timeoutSeconds"] >= 5
        assert probe["initialDelaySeconds"] >= 10
        assert "readinessProbe" not in container


@pytest.mark.parametrize(
    ("which", "args"),
    [("control", ["migrate", "--control"]), *[(r, ["migrate", "--region", r]) for r in REGIONS]],
)
def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook(
    renders: dict[str, Render], which: str, args: list[str]
) -> None:
    rendered = renders[which]
    [job] = rendered.of_kind("Job")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [*args, "--config", "/etc/konsil/konsil.toml"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # Its configuration exists before it: a hook too, created earlier (lower weight),
    # since the release's own ConfigMap is created only after the pre-install hooks.
    [volume] = [v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"]
    config_map = rendered.named("ConfigMap", volume["configMap"]["name"])
    assert config_map["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(config_map["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])
    main = rendered.named("ConfigMap", "konsil-control" if which == "control" else f"konsil-{which}")
    assert config_map["data"] == main["data"]


@pytest.mark.parametrize("which", ALL)
def test_services_probe_healthz_for_liveness_and_readyz_for_readiness(renders: dict[str, Render], which: str) -> None:
    name = "konsil-control" if which == "control" else f"konsil-{which}-region"
    [container] = renders[which].named("Deployment", name)["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080, "metrics": 9464}


@pytest.mark.parametrize("which", ALL)
def test_every_pod_runs_locked_down_with_resources(renders: dict[str, Render], which: str) -> None:
    pods = list(renders[which].pod_specs())
    assert len(pods) >= (2 if which == "control" else 5)
    for obj, pod in pods:
        where = kn(obj)
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, where
        assert security["runAsUser"] == 10001, where
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, where
        tmp = {v["name"]: v for v in pod["volumes"]}["tmp"]
        assert "emptyDir" in tmp, where
        for container in pod["containers"] + pod.get("initContainers", []):
            where = f"{kn(obj)} container {container['name']}"
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["capabilities"] == {"drop": ["ALL"]}, where
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert ctx["runAsNonRoot"] is True, where
            assert ctx.get("privileged") is not True, where
            resources = container["resources"]
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= resources[part].keys(), where
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], where


# --- secrets by reference only -----------------------------------------------------------

SECRET_WORDS = re.compile(r"SECRET|PASSWORD|TOKEN|KEY|DATABASE|BROKER_URL|ROLE_ID|SECRET_ID")


def containers(rendered: Render) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj, pod in rendered.pod_specs():
        for container in pod["containers"]:
            yield f"{kn(obj)}/{container['name']}", container


@pytest.mark.parametrize("which", ALL)
def test_secrets_come_only_by_reference(renders: dict[str, Render], which: str) -> None:
    rendered = renders[which]
    assert not rendered.of_kind("Secret"), "the charts never create a Secret: they name existing ones"
    checked = 0
    for where, container in containers(rendered):
        from_secrets = {e["name"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}
        for env in container["env"]:
            if not SECRET_WORDS.search(env["name"]):
                continue
            checked += 1
            if "value" not in env:
                ref = env["valueFrom"]["secretKeyRef"]
                assert ref["name"] == rendered.values["existingSecret"], f"{where} {env['name']}"
                continue
            # A connection URL assembled in the pod: its password is a variable that
            # comes from a Secret, never a literal.
            password = urlsplit(env["value"]).password
            assert password is not None, f"{where} {env['name']}: a secret-looking value {env['value']!r}"
            match = re.fullmatch(r"\$\((\w+)\)", password)
            assert match and match.group(1) in from_secrets, (
                f"{where} {env['name']}: password is not a secret reference"
            )
            names = [e["name"] for e in container["env"]]
            assert names.index(match.group(1)) < names.index(env["name"]), "$(VAR) needs VAR defined before it"
    assert checked >= (3 if which == "control" else 20)
    # The configuration files hold no credential of any kind.
    for config_map in rendered.of_kind("ConfigMap"):
        config = tomllib.loads(config_map["data"]["konsil.toml"])
        text = repr(config)
        for key in (
            "internal_secret",
            "discovery_key",
            "media_node_key",
            "token",
            "secret_id",
            "password'",
            "database",
        ):
            assert f"'{key}" not in text, f"{kn(config_map)} holds {key}"


# --- one region per release --------------------------------------------------------------


def leaf_strings(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from leaf_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from leaf_strings(item)
    elif isinstance(value, str):
        yield value


@pytest.mark.parametrize(("region", "other"), [("eu", "us"), ("us", "eu")])
def test_no_value_of_another_region_appears_in_a_region_render(
    renders: dict[str, Render], region: str, other: str
) -> None:
    own = set(leaf_strings(region_values(region)))
    foreign = {s for s in leaf_strings(region_values(other)) if s not in own}
    assert {f"pg.{other}.konsil.internal", f"https://{other}.konsil.example", f"konsil-{other}"} <= foreign
    text = renders[region].text
    # The bare id ("us" is in "status") is looked for as a word below.
    leaked = sorted(s for s in foreign - {other} if s in text)
    assert leaked == [], f"the {region} render holds {other}'s values"
    assert not re.search(rf"(?<![a-z]){other}(?![a-z])", text, re.IGNORECASE), (
        f"region id {other} in the {region} render"
    )
    assert f"KONSIL_REGIONS__{other.upper()}__" not in text


def test_control_render_holds_no_region_database_vault_or_relay_setting(renders: dict[str, Render]) -> None:
    rendered = renders["control"]
    text = rendered.text
    for region in REGIONS:
        for value in leaf_strings(
            {k: region_values(region)[k] for k in ("database", "vault", "rabbitmq", "mediaNodes")}
        ):
            if len(value) > 5 and "." in value:  # host names and URLs
                assert value not in text, f"{value} of region {region} in the control render"
    assert "vault" not in text.lower()
    assert "amqp" not in text
    [config_map] = [
        c for c in rendered.of_kind("ConfigMap") if "helm.sh/hook" not in c["metadata"].get("annotations", {})
    ]
    config = tomllib.loads(config_map["data"]["konsil.toml"])
    for entry in config["regions"]:
        assert entry.keys() <= {"id", "jurisdiction", "public_url", "internal_url"}
    envs = {e["name"] for _, c in containers(rendered) for e in c["env"]}
    assert envs == {
        "KONSIL_CONFIG",
        "DATABASE_PASSWORD",
        "KONSIL_CONTROL__DATABASE",
        "KONSIL_DISCOVERY_KEY",
        "KONSIL_REGIONS__EU__INTERNAL_SECRET",
        "KONSIL_REGIONS__US__INTERNAL_SECRET",
    }


def test_control_schema_refuses_a_region_database_in_its_values() -> None:
    values = values_of(CONTROL_EXAMPLE)
    values["regions"][0]["database"] = "postgresql://konsil_eu@pg.eu.konsil.internal/konsil_eu"
    with pytest.raises(helm.HelmValuesError) as caught:
        render(CONTROL_CHART, values, "konsil-control", "konsil-control")
    assert "additional properties 'database' not allowed" in str(caught.value)


# --- network policies --------------------------------------------------------------------


def egress_ports(policy: Mapping[str, Any]) -> list[tuple[list[Any], set[int]]]:
    return [(rule["to"], {p["port"] for p in rule["ports"]}) for rule in policy["spec"]["egress"]]


@pytest.mark.parametrize("region", REGIONS)
def test_region_pods_reach_only_their_own_services(renders: dict[str, Render], region: str) -> None:
    rendered = renders[region]
    values = rendered.values["networkPolicy"]
    egress = rendered.named("NetworkPolicy", f"konsil-{region}-egress")
    assert egress["spec"]["policyTypes"] == ["Egress"]
    [selected] = egress["spec"]["podSelector"]["matchExpressions"]
    assert set(selected["values"]) == {"region", "worker", "beat", "migrations"}
    rules = egress_ports(egress)
    assert rules[:5] == [
        (values_of(REGION_CHART / "values.yaml")["networkPolicy"]["dns"], {53}),
        (values["database"], {5432}),
        (values["vault"], {8200}),
        (values["rabbitmq"], {5671}),
        (values["controlPlane"], {8080}),
    ]
    assert rules[5:] == [(values["telemetry"], {4318})], "only the collector besides"
    for peers, _ in rules:
        assert peers, "an egress rule without peers would allow every destination"
    ingress = rendered.named("NetworkPolicy", f"konsil-{region}-region-ingress")
    [http, metrics] = ingress["spec"]["ingress"]
    assert http["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert http["from"] == values["ingressFrom"] + values["controlPlaneFrom"]
    assert metrics["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    # The region service's connection-test peer reaches the region's relays only.
    relay = rendered.named("NetworkPolicy", f"konsil-{region}-relay-egress")
    assert relay["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "region"
    [rule] = relay["spec"]["egress"]
    assert rule["to"] == values["mediaNodes"] and rule["to"]
    assert rule["ports"] == [
        {"port": 3478, "protocol": "UDP"},
        {"port": 3478, "protocol": "TCP"},
        {"port": 5349, "protocol": "TCP"},
        {"port": 49152, "endPort": 65535, "protocol": "UDP"},
    ]
    quiet = rendered.named("NetworkPolicy", f"konsil-{region}-no-ingress")
    assert [{"port": "metrics", "protocol": "TCP"}] == [p for r in quiet["spec"]["ingress"] for p in r["ports"]]


def test_control_plane_reaches_regions_only_on_their_internal_api(renders: dict[str, Render]) -> None:
    rendered = renders["control"]
    values = rendered.values
    egress = rendered.named("NetworkPolicy", "konsil-control-egress")
    rules = egress_ports(egress)
    by_region = {r["id"]: r["networkPolicyTo"] for r in values["regions"]}
    assert (by_region["eu"], {8080}) in rules
    assert (by_region["us"], {8080}) in rules
    assert (values["networkPolicy"]["database"], {5432}) in rules
    assert {frozenset(ports) for _, ports in rules} == {
        frozenset({53}),
        frozenset({5432}),
        frozenset({8080}),
        frozenset({4318}),
    }
    assert len(rules) == 5


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        (("region", "id"), "at '/region': missing property 'id'"),
        (("database", "host"), "at '/database': missing property 'host'"),
        (("vault", "address"), "at '/vault': missing property 'address'"),
        (("region", "ownHosts"), "at '/region': missing property 'ownHosts'"),
    ],
)
def test_a_values_file_missing_a_required_key_fails_with_the_schema_message(
    tmp_path: Path, remove: tuple[str, str], message: str
) -> None:
    values = region_values("eu")
    del values[remove[0]][remove[1]]
    with pytest.raises(helm.HelmValuesError) as caught:
        render(REGION_CHART, values, "konsil-eu", "konsil-eu")
    assert "values don't meet the specifications of the schema(s)" in str(caught.value)
    assert message in str(caught.value)


def test_a_region_id_that_is_not_two_lower_case_letters_is_refused() -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        render(REGION_CHART, region_values("eu", {"region": {"id": "EU"}}), "konsil-eu", "konsil-eu")
    assert "at '/region/id': 'EU' does not match pattern '^[a-z]{2}$'" in str(caught.value)


def test_a_single_region_service_replica_is_refused() -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        render_region("eu", {"regionService": {"replicas": 1, "autoscaling": {"enabled": False}}})
    assert "at '/regionService/replicas': minimum: got 1, want 2" in str(caught.value)
    with pytest.raises(helm.HelmValuesError) as caught:
        render_region("eu", {"regionService": {"autoscaling": {"minReplicas": 1}}})
    assert "at '/regionService/autoscaling/minReplicas': minimum: got 1, want 2" in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "what", "host"),
    [
        ({"database": {"host": "pg.us.konsil.internal"}}, "database", "pg.us.konsil.internal"),
        ({"vault": {"address": "https://vault.us.konsil.internal:8200"}}, "vault.address", "vault.us.konsil.internal"),
        ({"rabbitmq": {"host": "rabbitmq.us.konsil.internal"}}, "rabbitmq", "rabbitmq.us.konsil.internal"),
        # A look-alike is not below the region's domain.
        (
            {"database": {"host": "pg.eu.konsil.internal.attacker.example"}},
            "database",
            "pg.eu.konsil.internal.attacker.example",
        ),
    ],
)
def test_a_region_release_pointing_at_another_regions_host_fails_to_render(
    overrides: dict[str, Any], what: str, host: str
) -> None:
    with pytest.raises(helm.HelmRenderError) as caught:
        render_region("eu", overrides)
    assert (
        f'{what} host "{host}" is not one of region eu\'s own hosts (region.ownHosts: eu.konsil.internal): '
        "a region release connects only to its own region's database, Vault and RabbitMQ"
    ) in str(caught.value)


def test_network_policy_without_peers_for_a_destination_fails_to_render() -> None:
    with pytest.raises(helm.HelmRenderError) as caught:
        render_region("eu", {"networkPolicy": {"database": []}})
    assert "networkPolicy.database: list where it is" in str(caught.value)
    render_region("eu", {"networkPolicy": {"enabled": False, "database": []}})


# --- the rendered configuration is one Konsil reads --------------------------------------


def pod_environment(container: Mapping[str, Any]) -> dict[str, str]:
    """The container's environment as Kubernetes builds it, each Secret key given a test
    value and ``$(VAR)`` expanded from the variables before it."""
    environ: dict[str, str] = {}
    for env in container["env"]:
        if "value" in env:
            environ[env["name"]] = re.sub(r"\$\((\w+)\)", lambda m: environ[m.group(1)], env["value"])
        elif "secretKeyRef" in env["valueFrom"]:
            environ[env["name"]] = f"test-{env['valueFrom']['secretKeyRef']['key']}-0123456789abcdef"
        else:
            environ[env["name"]] = "node-1"
    return environ


def config_file(tmp_path: Path, rendered: Render, name: str) -> Path:
    raw = tomllib.loads(rendered.named("ConfigMap", name)["data"]["konsil.toml"])
    if "telemetry" not in Settings.__struct_fields__:
        # [telemetry] is read once the telemetry settings are in (another part of issue
        # 15): until then the rest of the file is checked.
        raw.pop("telemetry", None)
    path = tmp_path / f"{name}.toml"
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return path


@pytest.mark.parametrize("region", REGIONS)
def test_region_configuration_loads_as_the_region_processes_read_it(
    tmp_path: Path, renders: dict[str, Render], region: str
) -> None:
    rendered = renders[region]
    values = rendered.values
    path = config_file(tmp_path, rendered, f"konsil-{region}")
    [container] = rendered.named("Deployment", f"konsil-{region}-region")["spec"]["template"]["spec"]["containers"]
    settings = load_settings(path, pod_environment(container)).for_region(region)
    assert settings.mode == "services"
    assert settings.control_url == values["controlPlane"]["url"]
    [own] = settings.regions
    assert own.id == region
    assert own.listen == "0.0.0.0:8080"
    assert own.database == (
        f"postgresql://konsil_{region}:test-database-password-0123456789abcdef@pg.{region}.konsil.internal:5432/"
        f"konsil_{region}?sslmode=verify-full"
    )
    assert urlsplit(own.broker_url).hostname == f"rabbitmq.{region}.konsil.internal"
    assert urlsplit(own.broker_url).path == f"/konsil-{region}"
    assert own.vault.backend == "vault"
    assert own.vault.auth == "kubernetes"
    assert own.vault.kubernetes_role == f"konsil-region-{region}"
    assert own.vault.url == f"https://vault.{region}.konsil.internal:8200"
    assert own.lifecycle.runner == "celery"
    assert own.internal_secret == "test-internal-secret-0123456789abcdef"

    node_path = config_file(tmp_path, rendered, f"konsil-{region}-media-node")
    [node] = rendered.named("DaemonSet", f"konsil-{region}-media-node")["spec"]["template"]["spec"]["containers"]
    agent = agent_settings(read_config(node_path, pod_environment(node)), region)
    # The same broker and vhost, the nodes' own login.
    node_broker, region_broker = urlsplit(agent.broker_url), urlsplit(own.broker_url)
    assert (node_broker.hostname, node_broker.port, node_broker.path) == (
        region_broker.hostname,
        region_broker.port,
        region_broker.path,
    )
    assert (node_broker.username, region_broker.username) == (f"konsil-{region}-nodes", f"konsil-{region}")
    # The agents report as the other processes do: OTLP, JSON logs, /metrics on the node.
    assert agent.telemetry.metrics_listen == "0.0.0.0:9464"
    assert agent.telemetry.log_format == "json"
    assert agent.telemetry.otlp_endpoint == settings.telemetry.otlp_endpoint != ""
    assert agent.media_node_key == "test-media-node-key-0123456789abcdef"
    assert agent.turn_secret_in_vault is not None
    assert agent.turn_secret_in_vault.kubernetes_role == f"konsil-media-node-{region}"
    assert agent.turn_secret_in_vault.path == "konsil/turn"


def test_control_configuration_loads_as_the_control_plane_reads_it(tmp_path: Path, renders: dict[str, Render]) -> None:
    rendered = renders["control"]
    path = config_file(tmp_path, rendered, "konsil-control")
    [container] = rendered.named("Deployment", "konsil-control")["spec"]["template"]["spec"]["containers"]
    settings: ControlPlaneSettings = load_control_settings(path, pod_environment(container))
    assert settings.control.listen == "0.0.0.0:8080"
    assert settings.control.database.startswith("postgresql://konsil_control:test-database-password-")
    assert [r.id for r in settings.regions] == ["eu", "us"]
    assert settings.region("eu").base_url == "http://konsil-eu-region.konsil-eu.svc:8080"
    assert settings.region("us").internal_secret == "test-internal-secret-us-0123456789abcdef"
