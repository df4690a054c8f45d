"""GitOps promotion: gates -> canary -> progressive analysis on Prometheus -> promote or roll back.

One flow (`flow.py`) drives a `Target` (`targets/`): the local canary behind HAProxy,
or a KServe InferenceService; one analysis spec (`analysis.yaml`, `spec.py`) and one
evaluation loop (`analysis.py`) judge both. `python -m inference_service.promotion` is the
CLI that `task promote` / `task rollback` and `.github/workflows/promote.yml` call.
"""
