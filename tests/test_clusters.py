"""Cluster profiles: the Ray cluster-launcher YAMLs against the schema the installed Ray ships, the
KubeRay RayCluster through the installed Ray's own reader of it, and the Slurm batch script run
for real on this machine with fake `scontrol`/`srun` (Slurm cannot run here; the fakes run each
step locally, so every "node" is a real Ray node on this machine)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

import paretolab
import paretolab.clusters
from support import free_ports

PROFILES = Path(paretolab.clusters.__file__).parent
LAUNCHER = ["aws.yaml", "gcp.yaml"]
INSTALLS_PARETOLAB = "paretolab @ git+"


def ray_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def load(name: str) -> dict:
    return yaml.safe_load((PROFILES / name).read_text())


@pytest.mark.parametrize("name", LAUNCHER)
def test_launcher_profile_is_valid_for_ray_up(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load(name)
    jsonschema.validate(config, ray_schema())  # as written
    prepared = prepare_config(copy.deepcopy(config))  # as `ray up` sees it, merged with the provider's defaults
    validate_config(prepared)
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    assert head["resources"] == {"CPU": 0} and head["max_workers"] == 0  # the driver has the head to itself
    gpu_types = [t for t in types.values() if t["resources"].get("GPU", 0) >= 1]
    assert gpu_types and all(t["min_workers"] == 0 < t["max_workers"] for t in gpu_types)  # they autoscale from 0


def test_schema_check_can_fail():
    config = load("aws.yaml")
    config["available_node_types"]["gpu_t4"]["resources"] = {"GPU": 0.5}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, ray_schema())


@pytest.mark.parametrize("name", LAUNCHER)
def test_launcher_profile_installs_paretolab_on_every_node(name):
    from ray.autoscaler._private.util import prepare_config

    import ray

    prepared = prepare_config(load(name))
    for role in ("head_setup_commands", "worker_setup_commands"):
        commands = prepared[role]
        assert any(c.startswith("pip install") and INSTALLS_PARETOLAB in c for c in commands), role
        assert any(f"ray[default]=={ray.__version__}" in c for c in commands)  # the Ray `ray up` runs
    assert "--address auto" in (PROFILES / name).read_text()  # the documented way to run


def test_kuberay_manifest_has_what_kuberay_needs():
    from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr

    docs = list(yaml.safe_load_all((PROFILES / "kuberay.yaml").read_text()))
    (cr,) = [d for d in docs if d["kind"] == "RayCluster"]
    assert cr["apiVersion"] == "ray.io/v1"
    spec = cr["spec"]
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0" and head["template"]["spec"]["containers"][0]["image"]
    (gpu,) = spec["workerGroupSpecs"]
    container = gpu["template"]["spec"]["containers"][0]
    assert container["image"] and "rayStartParams" in gpu
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # what the Ray autoscaler inside KubeRay reads from it
    config = _derive_autoscaling_config_from_ray_cr(copy.deepcopy(cr) | {"metadata": {"name": "p", "namespace": "d"}})
    node_types = config["available_node_types"]
    assert node_types["gpu"]["resources"]["GPU"] == 1 and node_types["gpu"]["max_workers"] == gpu["maxReplicas"]
    assert node_types["headgroup"]["resources"]["CPU"] == 0


SLURM = PROFILES / "slurm.sbatch"


def test_slurm_script_passes_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    out = subprocess.run(["shellcheck", str(SLURM)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


FAKE_SCONTROL = """#!/usr/bin/env bash
# fake scontrol: `scontrol show hostnames LIST` lists the nodes of the fake allocation
[ "$1 $2" = "show hostnames" ] && printf '%s\\n' {nodes}
"""
FAKE_SRUN = """#!/usr/bin/env bash
# fake srun: records the node asked for, then runs the step on this machine
while [ $# -gt 0 ]; do
  case $1 in
    -w) echo "$2" >> "{log}"; shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
exec "$@"
"""


def test_slurm_script_starts_ray_over_the_allocation_and_runs_the_sweep(ray_dirs, tmp_path, write_spec):
    ray_dir = ray_dirs()
    nodes = ["node1", "node2"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "srun.log"
    for name, text in {"scontrol": FAKE_SCONTROL.format(nodes=" ".join(nodes)), "srun": FAKE_SRUN.format(log=log)}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    port, client_port, dashboard_port = free_ports(3)
    # one CPU per node and one CPU per worker: the two workers must land on two nodes
    spec = write_spec(tmp_path, widths="[16, 32]", seeds=4, max_steps=200, extra="resources: {cpu: 1}\n")
    env = ray_dir.env(PATH=f"{bin_dir}:{ray_dir.env()['PATH']}", SLURM_JOB_NODELIST="node[1-2]", SLURM_CPUS_PER_TASK="1",
                      RAY_PORT=str(port), RAY_HEAD_ARGS=f"--include-dashboard=false --ray-client-server-port={client_port} "
                                                         f"--dashboard-port={dashboard_port}")
    out = subprocess.run(["bash", str(SLURM), str(spec), "--store", str(tmp_path / "r")], env=env,
                         capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 node(s)" in out.stdout
    assert log.read_text().split() == ["node1", "node1", "node2"]  # head address, head, then the other node

    store = paretolab.open_store(tmp_path / "r")
    rows = store.query("SELECT node, count(*) AS n FROM trials GROUP BY node").to_pylist()
    assert sum(r["n"] for r in rows) == 8 and len(rows) == 2  # the sweep ran on both Ray nodes
    assert ray_dir.processes() == []  # the script's Ray went down with it
