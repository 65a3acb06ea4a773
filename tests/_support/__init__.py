"""Helpers shared by every test folder.

- `oauth`: tokens obtained outside d365nb (msal/httpx against the sandbox), for tests
  that need a credential the client did not make itself.
- `browser`: plays the browser in sign-in flows (posts the sandbox's sign-in forms).
- `proxy`: a fault-injecting HTTPS proxy between client and sandbox.
- `ledger`: records what each reliability scenario injected and lost, for
  `test-artifacts/reliability.md`.
- `frames`: a table of every attribute type and rows that exercise it.
"""
