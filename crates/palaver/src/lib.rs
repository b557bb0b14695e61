//! Palaver: a self-hosted AI conversation backend, as a library that exposes an axum `Router`.
//!
//! Start with [`server::Application`] (bind, serve, shut down) or [`api::router`] to nest
//! the module in a host application.

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod gateway;
pub mod jobs;
pub mod limits;
pub mod pricing;
pub mod providers;
pub mod server;
pub mod service;
pub mod state;
pub mod store;
pub mod telemetry;

pub use config::Config;
pub use server::{Application, StartupError};
