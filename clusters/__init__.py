"""Connecting to Ray (`connect.py`) and the cluster profiles that start one: Ray cluster-launcher
YAMLs for AWS and GCP, a KubeRay RayCluster and a Slurm batch script (docs/clusters.md)."""
