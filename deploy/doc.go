// Package deploy holds no code the gateway runs: it is the home of the
// deployment files (the Dockerfile, the compose files, the Caddy, NATS and
// Prometheus configs, the Grafana dashboard, the Helm chart under helm/),
// and its tests check them offline, with the project's own config loader,
// nats-server, promtool and helm, since docker and Kubernetes are not at
// hand where the tests run.
package deploy
