"""The GitHub App and self-hosted service (webhook -> verified pull request). Not built yet."""
