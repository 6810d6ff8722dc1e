// The node's Prometheus metrics: the registry and its observer, the HTTP instruments, the
// listener on METRICS_PORT, and the per-node figures the heartbeat carries to the dashboard.
export { NodeMetrics, codeLabel, type MetricsObserver, type NodeMetricsOptions, type ObservedNode } from './nodeMetrics.js';
export { httpMetrics, loginOutcome, routeLabel } from './http.js';
export { startMetricsServer } from './server.js';
export { RateWindow, readFigures, type NodeFigures } from './rates.js';
export { ringFigures, ringTransitions, type PurposeFigures, type RingTransitions } from './ringFigures.js';
