"""What each step of the action does, composed from the services below it:

- `prepare`: the credential, the Key Vault secrets (masked), the kubeconfig and profiles;
- `run`: pytest (and `exec`: any command) with the prepared environment and the broker;
- `cleanup`: the run folder's credentials deleted, whatever the outcome.

`report` (the job summary) is its own package, `azpytest.report`.
"""
