"""The Kubernetes deliverables outside Rust: the rendered overlays against the
API's published schemas (kubernetes-validate), the Dockerfiles, and the Kueue
objects `lab k8s render-quotas` prints."""

import os
import pathlib
import shutil
import subprocess

import pytest
import yaml
from dockerfile_parse import DockerfileParser
import kubernetes_validate

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAB = ROOT / "target" / "debug" / "lab"
# The oldest Kubernetes we support: k8s-openapi's `v1_33` feature in scheduler/Cargo.toml.
OLDEST = "1.33.0"

def kustomize(path):
    """`kubectl kustomize PATH`, as a user renders it. kubectl is part of this
    project's machine image; a machine without it fails here rather than
    passing without the check (LAB_SKIP_KUBECTL=1 skips it on purpose)."""
    if shutil.which("kubectl") is None:
        if os.environ.get("LAB_SKIP_KUBECTL") == "1":
            pytest.skip("LAB_SKIP_KUBECTL=1: the overlays are not rendered")
        pytest.fail("kubectl is not installed, so the overlays cannot be rendered "
                    "(install it, or set LAB_SKIP_KUBECTL=1 to skip these checks)")
    out = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_every_rendered_object_passes_the_schema_of_the_oldest_supported_kubernetes(overlay):
    docs = kustomize(ROOT / "k8s" / "overlays" / overlay)
    assert len(docs) == 10
    for doc in docs:
        # strict: a field the schema lacks is an error, not a warning.
        kubernetes_validate.validate(doc, OLDEST, strict=True)


def test_an_overlay_with_the_per_user_namespaces_component_renders_and_passes_the_schema(tmp_path):
    """As README says to use it: the component added to an overlay."""
    rel = lambda p: os.path.relpath(ROOT / p, tmp_path)  # kustomize takes relative paths only
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{rel('k8s/overlays/production')}]\n"
        f"components: [{rel('k8s/components/per-user-namespaces')}]\n")
    docs = kustomize(tmp_path)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds.count("ClusterRole") == 1 and kinds.count("ClusterRoleBinding") == 1, kinds
    assert len(docs) == 12
    for doc in docs:
        kubernetes_validate.validate(doc, OLDEST, strict=True)
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"]
               for r in rule["resources"] for v in rule["verbs"]}
    # What each user namespace gets beside its pods (scheduler/src/kube/mod.rs: prepare).
    assert {("", "namespaces", "create"), ("networking.k8s.io", "networkpolicies", "create"),
            ("kueue.x-k8s.io", "localqueues", "create")} <= granted
    binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding")
    assert binding["subjects"][0]["namespace"] == "academy-lab"


def test_the_validator_rejects_what_kubernetes_would():
    deployment = next(d for d in kustomize(ROOT / "k8s" / "overlays" / "dev") if d["kind"] == "Deployment")
    deployment["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, OLDEST, strict=True)


def stages_and_copies(path):
    parser = DockerfileParser(path=str(path))
    stages, copies = [], []
    for instr in parser.structure:
        if instr["instruction"] == "FROM":
            words = instr["value"].split()
            if len(words) == 3 and words[1].lower() == "as":
                stages.append(words[2])
        elif instr["instruction"] in ("COPY", "ADD"):
            copies.append(instr["value"].split())
    return parser, stages, copies


@pytest.mark.parametrize("name", ["kernel.Dockerfile", "gateway.Dockerfile"])
def test_dockerfiles_parse_and_copy_only_paths_that_exist(name):
    parser, stages, copies = stages_and_copies(ROOT / "gpu-images" / name)
    assert parser.baseimage, "a final FROM"
    assert copies, "the image is built from this repository"
    for words in copies:
        flags = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        sources = paths[:-1]
        assert sources, words
        from_stage = [f.split("=", 1)[1] for f in flags if f.startswith("--from=")]
        if from_stage:
            assert from_stage[0] in stages, f"COPY --from={from_stage[0]}: no such stage"
            continue
        for src in sources:
            # The build context is the repository root (gpu-images/build).
            assert (ROOT / src).exists(), f"{name}: COPY {src}: not in the repository"


def test_the_kernel_image_puts_academy_kernel_where_the_backend_runs_it():
    parser, _, copies = stages_and_copies(ROOT / "gpu-images" / "kernel.Dockerfile")
    targets = [w[-1] for w in copies]
    # scheduler/src/kube/pod.rs: KERNEL_BINARY
    pod_rs = (ROOT / "scheduler" / "src" / "kube" / "pod.rs").read_text()
    assert 'pub const KERNEL_BINARY: &str = "/usr/local/bin/academy-kernel";' in pod_rs
    assert "/usr/local/bin/academy-kernel" in targets
    assert "--features cuda" in parser.content and "rust-src" in parser.content
    # A CUDA 13 runtime base for the final stage.
    assert parser.baseimage.startswith("nvidia/cuda:"), parser.baseimage
    assert "ARG CUDA_VERSION=13." in parser.content and "-runtime-" in parser.baseimage
    assert "USER 10001" in parser.content  # pods run as non-root uid 10001
    runs = [i["value"] for i in parser.structure if i["instruction"] == "RUN"]
    warm = next(r for r in runs if "academy-kernel execute" in r)
    # The compile cache is warmed with candle (notebook 02 runs `:dep candle-core`)...
    assert "/opt/academy/warmup.ipynb" in warm
    assert ":dep candle-core" in (ROOT / "examples" / "02-candle-in-rust.ipynb").read_text()
    # ...then handed to the kernel's uid with all of CARGO_HOME (its lock files too).
    assert "chown -R 10001:10001 /opt/academy /opt/rust/cargo" in warm
    gateway = DockerfileParser(path=str(ROOT / "gpu-images" / "gateway.Dockerfile"))
    assert "nonroot" in gateway.baseimage


def test_render_quotas_prints_kueue_objects_matching_the_groups(tmp_path):
    def lab(*args):
        r = subprocess.run([str(LAB), *args, "--data-dir", str(tmp_path)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout

    lab("group", "add", "cohort-a", "--guaranteed", "H100-80GB=16", "--borrow", "*=8", "--weight", "2")
    lab("group", "add", "staff", "--guaranteed", "1g.10gb=7")
    out = lab("k8s", "render-quotas", "--gpus", "16x8 H100-80GB; 2x7 1g.10gb")
    docs = [d for d in yaml.safe_load_all(out) if d]
    kinds = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert ("ResourceFlavor", "h100-80gb") in kinds and ("ResourceFlavor", "1g-10gb") in kinds
    cq = next(d for d in docs if d["kind"] == "ClusterQueue" and d["metadata"]["name"] == "cohort-a")
    assert cq["spec"]["cohort"] == "academy-lab"
    assert cq["spec"]["fairSharing"]["weight"] == "2"
    gpu = next(g for g in cq["spec"]["resourceGroups"] if g["coveredResources"] == ["nvidia.com/gpu"])
    assert gpu["flavors"] == [{"name": "h100-80gb", "resources": [
        {"name": "nvidia.com/gpu", "nominalQuota": 16, "borrowingLimit": 8}]}]
    staff = next(d for d in docs if d["kind"] == "ClusterQueue" and d["metadata"]["name"] == "staff")
    mig = next(g for g in staff["spec"]["resourceGroups"] if g["coveredResources"] == ["nvidia.com/mig-1g.10gb"])
    assert mig["flavors"][0]["resources"][0]["nominalQuota"] == 7
    lq = next(d for d in docs if d["kind"] == "LocalQueue" and d["metadata"]["name"] == "staff")
    assert lq["spec"]["clusterQueue"] == "staff" and lq["metadata"]["namespace"] == "academy-lab"
    # Without the cluster's GPUs there is nothing to render: a clear error.
    r = subprocess.run([str(LAB), "k8s", "render-quotas", "--data-dir", str(tmp_path), "--gpus", "none"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "render-quotas needs the cluster's GPUs" in r.stderr
