"""charts/marconi: lint, render, validate every manifest offline, and check what it deploys."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from node.notify.settings import NotifySettings
from tests.charts.chart import (
    CHART,
    EXAMPLE,
    EXAMPLE_VALUES,
    FULLNAME,
    KUBE_VERSIONS,
    NAMESPACE,
    ROOT,
    Helm,
    HelmFailed,
    Manifests,
    SchemaMissing,
    container,
    is_custom,
    validate,
)

MARCONI_IMAGE = "marconi:"


def env_of(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(workload).get("env", [])}


def secret_ref(entry: dict[str, Any]) -> tuple[str, str]:
    ref = entry["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --- helm lint, helm template, the schemas -------------------------------------------------------


@pytest.mark.parametrize("values", [(), (EXAMPLE,)], ids=["default", "three-partitions"])
def test_the_chart_lints_cleanly(helm: Helm, values: tuple[Path, ...]) -> None:
    out = helm.lint(*values)
    assert "0 chart(s) failed" in out
    assert "[WARNING]" not in out and "[ERROR]" not in out


@pytest.fixture(params=["default", "example", "bundled"])
def rendered(request: pytest.FixtureRequest) -> Manifests:
    """Each rendering: the default values, the three-partition example, the bundled etcd."""
    found: Manifests = request.getfixturevalue(request.param)
    return found


def test_every_rendered_manifest_is_valid_for_each_kubernetes_version(rendered: Manifests) -> None:
    custom = [d["kind"] for d in rendered.documents if is_custom(d)]
    assert set(custom) <= {"ServiceMonitor", "PrometheusRule"}
    checked = 0
    for document in rendered.documents:
        if is_custom(document):
            continue
        for version in KUBE_VERSIONS:
            validate(document, version)
            checked += 1
    assert checked == len(KUBE_VERSIONS) * (len(rendered.documents) - len(custom))


def test_a_broken_manifest_fails_validation(default: Manifests) -> None:
    proxy = default.named("Deployment", f"{FULLNAME}-proxy")
    validate(proxy, KUBE_VERSIONS[0])  # the unbroken one passes

    def broken(change: Any) -> dict[str, Any]:
        doc = copy.deepcopy(proxy)
        change(doc)
        return doc

    def misspelled(doc: dict[str, Any]) -> None:
        context = container(doc)["securityContext"]
        context["readOnlyRootFileSystem"] = context.pop("readOnlyRootFilesystem")

    def mistyped(doc: dict[str, Any]) -> None:
        doc["spec"]["replicas"] = "two"

    def unnamed(doc: dict[str, Any]) -> None:
        del container(doc)["name"]

    for change in (misspelled, mistyped, unnamed):
        with pytest.raises(jsonschema.ValidationError):
            validate(broken(change), KUBE_VERSIONS[0])
    with pytest.raises(SchemaMissing):
        validate({**proxy, "kind": "Deploymnet"}, KUBE_VERSIONS[0])


def test_the_validator_that_make_chart_runs_rejects_a_broken_file(
    default: Manifests, tmp_path: Path
) -> None:
    proxy = copy.deepcopy(default.named("Deployment", f"{FULLNAME}-proxy"))
    container(proxy)["securityContext"]["runAsUser"] = "root"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all([default.named("Service", f"{FULLNAME}-proxy"), proxy]))
    tool = Path(sys.executable).parent / "kubernetes-validate"
    done = subprocess.run(
        [str(tool), "--strict", "--quiet", "-k", KUBE_VERSIONS[0], str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert f"deployment/{FULLNAME}-proxy" in done.stdout
    assert "runAsUser" in done.stdout
    assert f"service/{FULLNAME}-proxy" not in done.stdout  # the valid one passed quietly


# --- what the chart deploys ----------------------------------------------------------------------


def test_three_partitions_make_three_node_deployments_each_reading_its_own_secret_key(
    example: Manifests,
) -> None:
    nodes = {
        d["metadata"]["labels"]["marconi.dev/partition"]: d
        for d in example.of("Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "node"
    }
    assert sorted(nodes) == ["p1", "p2", "p3"]
    refs = {name: secret_ref(env_of(d)["MARCONI_STORAGE"]) for name, d in nodes.items()}
    assert refs == {
        "p1": ("mongodb-p1", "uri"),  # an existing Secret
        "p2": (f"{FULLNAME}-storage", "p2"),  # the chart's, from the values
        "p3": (f"{FULLNAME}-storage", "p3"),
    }
    for name, node in nodes.items():
        assert node["metadata"]["name"] == f"{FULLNAME}-node-{name}"
        assert env_of(node)["MARCONI_PARTITION"]["value"] == name
    # The chart's Secret holds exactly the URIs given in the values.
    given = {
        p["name"]: p["mongodb"]["uri"]
        for p in EXAMPLE_VALUES["partitions"]
        if "uri" in p["mongodb"]
    }
    assert example.named("Secret", f"{FULLNAME}-storage")["stringData"] == given
    # Per-partition settings win over the node defaults.
    assert nodes["p2"]["spec"]["replicas"] == 3
    assert nodes["p1"]["spec"]["replicas"] == 2
    assert container(nodes["p3"])["resources"]["limits"]["memory"] == "1Gi"
    assert env_of(nodes["p3"])["MARCONI_LIMIT_MAX_MESSAGES_POST_SIZE"]["value"] == "131072"
    assert "MARCONI_LIMIT_MAX_MESSAGES_POST_SIZE" not in env_of(nodes["p1"])


def test_a_partition_on_postgresql_reads_its_uri_from_a_secret(helm: Helm) -> None:
    uri = "postgresql://marconi:secret@pg-p2:5432/marconi?pool_size=20&sslmode=require"
    manifests = helm.template(
        **{
            "partitions[0].name": "p1",
            "partitions[0].postgresql.existingSecret": "pg-p1",
            "partitions[1].name": "p2",
            "partitions[1].postgresql.uri": uri,
            "partitions[2].name": "p3",
            "partitions[2].mongodb.uri": "mongodb://m/p3",
        }
    )
    nodes = {
        d["metadata"]["labels"]["marconi.dev/partition"]: d
        for d in manifests.of("Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "node"
    }
    refs = {name: secret_ref(env_of(d)["MARCONI_STORAGE"]) for name, d in nodes.items()}
    assert refs == {
        "p1": ("pg-p1", "uri"),
        "p2": (f"{FULLNAME}-storage", "p2"),
        "p3": (f"{FULLNAME}-storage", "p3"),
    }
    stored = manifests.named("Secret", f"{FULLNAME}-storage")["stringData"]
    assert stored == {"p2": uri, "p3": "mongodb://m/p3"}
    with pytest.raises(HelmFailed, match="oneOf"):  # mongodb or postgresql, not both
        helm.template(
            **{
                "partitions[0].name": "p1",
                "partitions[0].postgresql.uri": "postgresql://h/a",
                "partitions[0].mongodb.uri": "mongodb://m/a",
            }
        )


def test_each_service_selects_the_pods_of_one_workload_and_targets_a_named_port(
    rendered: Manifests,
) -> None:
    workloads = rendered.of("Deployment") + rendered.of("StatefulSet")
    for service in rendered.of("Service"):
        matched = [w for w in workloads if selects(service["spec"]["selector"], pod_labels(w))]
        assert len(matched) == 1, service["metadata"]["name"]
        ports = {p["name"] for p in container(matched[0])["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    # Each partition's Service reaches only that partition's nodes.
    for node in rendered.of("Service"):
        partition = node["metadata"]["labels"].get("marconi.dev/partition")
        if partition is not None:
            assert node["spec"]["selector"]["marconi.dev/partition"] == partition


def test_every_pod_runs_as_a_non_root_user_with_a_read_only_root(rendered: Manifests) -> None:
    pods = list(rendered.pod_specs())
    assert pods
    for where, pod in pods:
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, where
        assert context["runAsUser"] != 0, where
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert pod["automountServiceAccountToken"] is False, where
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in pod["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, where
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], where
            assert c["resources"]["requests"], where
            if MARCONI_IMAGE in c["image"]:
                # Python may need a scratch directory: /tmp is an emptyDir.
                mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
                assert "emptyDir" in volumes[mounts["/tmp"]], where


def test_probes_and_scrape_annotations_name_the_containers_ports(rendered: Manifests) -> None:
    for workload in rendered.of("Deployment") + rendered.of("StatefulSet"):
        c = container(workload)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        for probe in ("readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"]["port"] in ports
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) in ports.values()


def test_the_proxy_autoscales_when_asked_and_keeps_a_disruption_budget(
    default: Manifests, example: Manifests
) -> None:
    proxy_name = f"{FULLNAME}-proxy"
    assert default.of("HorizontalPodAutoscaler") == []
    assert default.named("Deployment", proxy_name)["spec"]["replicas"] == 2
    hpa = example.named("HorizontalPodAutoscaler", proxy_name)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": proxy_name,
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    # With an autoscaler the Deployment names no replica count, or each upgrade would reset it.
    assert "replicas" not in example.named("Deployment", proxy_name)["spec"]
    for rendered in (default, example):
        proxy = rendered.named("Deployment", proxy_name)
        budget = rendered.named("PodDisruptionBudget", proxy_name)
        assert selects(budget["spec"]["selector"]["matchLabels"], pod_labels(proxy))
        nodes = [d for d in rendered.of("Deployment") if "-node-" in d["metadata"]["name"]]
        for node in nodes:
            own = rendered.named("PodDisruptionBudget", node["metadata"]["name"])
            selected = [
                n for n in nodes if selects(own["spec"]["selector"]["matchLabels"], pod_labels(n))
            ]
            assert selected == [node]


def test_the_service_monitor_scrapes_the_proxy_nodes_and_worker(
    default: Manifests, example: Manifests
) -> None:
    assert default.of("ServiceMonitor") == []
    (monitor,) = example.of("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    selector = monitor["spec"]["selector"]
    (components,) = selector["matchExpressions"]
    scraped = [
        s
        for s in example.of("Service")
        if selects(selector["matchLabels"], s["metadata"]["labels"])
        and s["metadata"]["labels"]["app.kubernetes.io/component"] in components["values"]
    ]
    assert sorted(s["metadata"]["name"] for s in scraped) == sorted(
        [f"{FULLNAME}-proxy", f"{FULLNAME}-worker"] + [f"{FULLNAME}-node-p{i}" for i in (1, 2, 3)]
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    for service in scraped:
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_the_registration_job_is_a_hook_reading_each_partitions_storage(
    example: Manifests,
) -> None:
    (job,) = example.of("Job")
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"post-install", "post-upgrade"}
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    env = env_of(job)
    assert env["MARCONI_URL"]["value"] == f"http://{FULLNAME}-proxy.{NAMESPACE}.svc:8888"
    for i, name in enumerate(("p1", "p2", "p3")):
        node = example.named("Deployment", f"{FULLNAME}-node-{name}")
        assert secret_ref(env[f"MARCONI_STORAGE_{i}"]) == secret_ref(
            env_of(node)["MARCONI_STORAGE"]
        )
    assert "MARCONI_AUTH_TOKEN" not in env  # the example logs in with OS_* credentials
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "marconi-admin-openstack"}}]


def test_the_catalog_is_the_given_etcd_or_the_bundled_one(
    default: Manifests, example: Manifests, bundled: Manifests
) -> None:
    def catalog_urls(rendered: Manifests) -> set[str]:
        return {
            env_of(rendered.named("Deployment", f"{FULLNAME}-{name}"))["MARCONI_CATALOG_URL"][
                "value"
            ]
            for name in ("proxy", "worker")
        }

    assert default.of("StatefulSet") == []
    assert catalog_urls(default) == {"http://etcd:2379"}
    assert catalog_urls(example) == {",".join(EXAMPLE_VALUES["catalog"]["endpoints"])}
    assert catalog_urls(bundled) == {f"http://{FULLNAME}-etcd:2379"}
    etcd = bundled.named("StatefulSet", f"{FULLNAME}-etcd")
    assert etcd["spec"]["replicas"] == 3
    (cluster,) = [a for a in container(etcd)["args"] if a.startswith("--initial-cluster=")]
    assert len(cluster.split(",")) == 3
    peers = bundled.named("Service", etcd["spec"]["serviceName"])
    assert peers["spec"]["clusterIP"] == "None"


def test_the_bundled_etcds_quota_is_its_own_default_unless_set(
    helm: Helm, bundled: Manifests
) -> None:
    def quota(rendered: Manifests) -> list[str]:
        etcd = rendered.named("StatefulSet", f"{FULLNAME}-etcd")
        return [a for a in container(etcd)["args"] if a.startswith("--quota-backend-bytes")]

    assert quota(bundled) == []
    sized = helm.template(
        EXAMPLE, **{"etcd.enabled": "true", "etcd.quotaBackendBytes": "4294967296"}
    )
    assert quota(sized) == ["--quota-backend-bytes=4294967296"]


def test_the_image_is_the_projects_version(default: Manifests) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]
    for _, pod in default.pod_specs():
        assert pod["containers"][0]["image"] == f"marconi:{project['version']}"


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"partitions[0].name": "P_1", "partitions[0].mongodb.uri": "mongodb://m/db"}, "pattern"),
        ({"partitions[0].name": "p1", "partitions[0].mongodb.existingSecret": ""}, "mongodb.uri"),
        (
            {
                "partitions[0].name": "p1",
                "partitions[0].mongodb.uri": "mongodb://m/a",
                "partitions[1].name": "p1",
                "partitions[1].mongodb.uri": "mongodb://m/b",
            },
            "listed twice",
        ),
        ({"fullnameOverride": "x" * 60}, "longer than 63"),
        ({"catalog.endpoints": "null"}, "catalog.endpoints"),
        (
            {
                "partitions[0].name": "p1",
                "partitions[0].mongodb.uri": "mongodb://m/a",
                "partitions[0].state": "gone",
            },
            "state",
        ),
        ({"proxy.auth.mode": "noauth"}, "insecureNoauth=true"),
    ],
    ids=["name", "no-uri", "twice", "too-long", "no-catalog", "bad-state", "noauth"],
)
def test_values_that_cannot_work_are_refused(
    helm: Helm, sets: dict[str, str], message: str
) -> None:
    with pytest.raises(HelmFailed, match=message):
        helm.template(**sets)


def test_the_alerts_and_the_dashboard_come_with_the_service_monitor(
    default: Manifests, example: Manifests
) -> None:
    assert default.of("PrometheusRule") == []
    assert not [c for c in default.of("ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    (rule,) = example.of("PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    # The rule file promtool tests is the one rendered, whole.
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    dashboard = example.named("ConfigMap", f"{FULLNAME}-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    text = (CHART / "files" / "dashboard.json").read_text()
    assert dashboard["data"]["marconi.json"] == text.rstrip("\n")
    assert json.loads(dashboard["data"]["marconi.json"])["uid"] == "marconi-cluster"


def test_the_alerts_and_the_dashboard_can_be_turned_on_and_off_on_their_own(helm: Helm) -> None:
    off = helm.template(
        EXAMPLE,
        **{"metrics.prometheusRule.enabled": "false", "metrics.dashboard.enabled": "false"},
    )
    assert off.of("ServiceMonitor") != []
    assert off.of("PrometheusRule") == []
    assert not [c for c in off.of("ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    on = helm.template(
        **{"metrics.prometheusRule.enabled": "true", "metrics.dashboard.enabled": "true"}
    )
    assert on.of("ServiceMonitor") == []
    assert len(on.of("PrometheusRule")) == 1
    assert on.named("ConfigMap", f"{FULLNAME}-dashboard")


def test_the_signed_url_secret_reaches_every_node_and_proxy_only_when_set(
    helm: Helm, default: Manifests
) -> None:
    def workloads(manifests: Manifests) -> list[dict[str, Any]]:
        return [
            d
            for d in manifests.of("Deployment")
            if d["metadata"]["labels"]["app.kubernetes.io/component"] in ("node", "proxy")
        ]

    assert all("MARCONI_SIGNED_URL_KEY" not in env_of(d) for d in workloads(default))
    manifests = helm.template(**{"signedUrls.secret": "marconi-signing"})
    found = workloads(manifests)
    assert {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in found} == {
        "node",
        "proxy",
    }
    for workload in found:
        assert secret_ref(env_of(workload)["MARCONI_SIGNED_URL_KEY"]) == ("marconi-signing", "key")


def test_notification_settings_reach_every_node_as_the_node_reads_them(helm: Helm) -> None:
    manifests = helm.template(
        **{
            "notifications.requireConfirmation": "true",
            "notifications.smtp.host": "mail.example.test",
            "notifications.smtp.port": "587",
        }
    )
    nodes = [
        d
        for d in manifests.of("Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "node"
    ]
    assert nodes
    for node in nodes:
        environment = {name: e["value"] for name, e in env_of(node).items() if "value" in e}
        settings = NotifySettings.from_env(environ=environment)
        assert settings.require_confirmation is True
        assert (settings.smtp_host, settings.smtp_port) == ("mail.example.test", 587)
        assert settings.enabled is True and settings.webhook_timeout == 10.0


def test_confirmation_and_trustee_settings_reach_the_nodes_and_the_proxy(
    helm: Helm, default: Manifests
) -> None:
    def of(manifests: Manifests, component: str) -> list[dict[str, Any]]:
        return [
            d
            for d in manifests.of("Deployment")
            if d["metadata"]["labels"]["app.kubernetes.io/component"] == component
        ]

    trustee = {"MARCONI_NOTIFY_TRUSTEE_USERNAME", "MARCONI_NOTIFY_TRUSTEE_PASSWORD"}
    for node in of(default, "node"):  # safe defaults: no email, no trustee
        assert not trustee & set(env_of(node))
        assert "MARCONI_NOTIFY_EXTERNAL_CONFIRMATION_URL" not in env_of(node)
    assert all("MARCONI_TRUSTEE_USER_ID" not in env_of(p) for p in of(default, "proxy"))

    manifests = helm.template(
        **{
            "notifications.confirmation.externalUrl": "https://confirm.example.test/",
            "notifications.confirmation.emailSender": "Queues <queues@example.test>",
            "notifications.trustee.userId": "5f1e0000trustee",
            "notifications.trustee.username": "marconi-trustee",
            "notifications.trustee.passwordSecret": "marconi-trustee",
        }
    )
    nodes = of(manifests, "node")
    assert nodes
    for node in nodes:
        environment = env_of(node)
        values = {name: e["value"] for name, e in environment.items() if "value" in e}
        settings = NotifySettings.from_env(environ=values)
        assert settings.external_confirmation_url == "https://confirm.example.test/"
        assert settings.confirmation_email_sender == "Queues <queues@example.test>"
        assert settings.confirmation_email_topic == NotifySettings().confirmation_email_topic
        assert settings.keystone_url == "http://keystone-api.openstack.svc.cluster.local:5000"
        assert (settings.trustee_username, settings.trustee_user_domain) == (
            "marconi-trustee",
            "Default",
        )
        password = environment["MARCONI_NOTIFY_TRUSTEE_PASSWORD"]
        assert secret_ref(password) == ("marconi-trustee", "password")
    for proxy in of(manifests, "proxy"):
        assert env_of(proxy)["MARCONI_TRUSTEE_USER_ID"]["value"] == "5f1e0000trustee"

    with pytest.raises(HelmFailed, match=r"notifications\.trustee\.passwordSecret"):
        helm.template(**{"notifications.trustee.username": "marconi-trustee"})
