"""The Kubernetes provider: a namespace per sandbox, reached through any kubeconfig."""
