"""xDS delivery: resource types, checked snapshots, the snapshot cache and the ADS server."""
