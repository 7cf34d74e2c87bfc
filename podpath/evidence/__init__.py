"""The evidence the verifier, `status`, `trace` and the drills gather from a running lab,
and the faults the drills apply."""
