//! lantern: a forward proxy that brings shadow AI into the light.
//!
//! It recognises traffic to public AI services, reads the prompts sent to
//! them, finds sensitive data in them and — per a YAML policy — logs,
//! coaches, redacts or blocks.
//!
//! # Layout
//!
//! In the order a request travels:
//!
//! - [`config`]: `lantern.yaml`, defaults and validation.
//! - [`catalog`]: the AI app catalog, host → app.
//! - [`identity`]: who is asking: Basic auth, trusted header, network map.
//! - [`proxy`]: listener, limits, `CONNECT` (blind tunnel or interception),
//!   forwarding, upstream client, shutdown.
//! - [`tls`]: the lantern CA, leaf minting and caching, upstream trust.
//! - [`inspect`]: the seam where an intercepted request meets judgement.
//! - [`extract`]: provider-aware prompt extraction (which fields are the
//!   prompt, files, attachments) and in-place redaction rewrite.
//! - [`detect`]: the detection engine (`Engine::scan`), knows nothing of HTTP.
//! - [`scan`]: `lantern scan`, the engine over files and stdin.
//! - [`policy`]: who may send what to which app; first matching rule wins.
//! - [`action`]: block/coach responses in each provider's error shape, coaching page, acknowledgements.
//! - [`audit`]: JSON-lines audit events, written off the request path;
//!   size rotation and reopen for logrotate.
//! - [`report`]: `lantern report`, usage summaries from audit files
//!   (text, JSON, CSV, self-contained HTML).
//! - [`metrics`]: every Prometheus metric.
//! - [`admin`]: `/metrics`, `/healthz`, `/readyz`, `/ca.pem`.
//! - [`rules`]: load and reload config, catalog, detectors and policy as one set.
//! - [`diag`]: `file:line:col` problem reports.

pub mod action;
pub mod admin;
pub mod audit;
pub mod catalog;
pub mod config;
pub mod detect;
pub mod diag;
pub mod extract;
pub mod identity;
pub mod inspect;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod report;
pub mod rules;
pub mod scan;
pub mod tls;
