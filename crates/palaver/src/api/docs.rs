//! The OpenAPI document and an interactive docs page whose assets are vendored
//! (swagger-ui-dist, see assets/vendor/swagger-ui/VERSION): nothing is fetched at build or run time.

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;

use crate::state::AppState;

const INDEX: &str = r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Palaver API</title>
  <link rel="stylesheet" href="__BASE__/swagger-ui.css">
  <link rel="icon" type="image/png" href="__BASE__/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="__BASE__/swagger-ui-bundle.js"></script>
  <script>
    // Relative to this page, so the docs work when Palaver is nested under a prefix.
    var base = window.location.pathname.replace(/\/$/, "");
    window.ui = SwaggerUIBundle({ url: base + "/openapi.json", dom_id: "#swagger-ui", persistAuthorization: true });
  </script>
</body>
</html>"##;

const BUNDLE: &[u8] = include_bytes!("../../assets/vendor/swagger-ui/swagger-ui-bundle.js");
const CSS: &[u8] = include_bytes!("../../assets/vendor/swagger-ui/swagger-ui.css");
const FAVICON: &[u8] = include_bytes!("../../assets/vendor/swagger-ui/favicon-32x32.png");

pub fn router(openapi_json: String) -> Router<AppState> {
    let index = INDEX.replace("__BASE__", "api-docs");
    let index_slash = INDEX.replace("__BASE__/", "");
    Router::new()
        .route("/api-docs", get(move || async move { Html(index) }))
        .route("/api-docs/", get(move || async move { Html(index_slash) }))
        .route(
            "/api-docs/openapi.json",
            get(
                move || async move { ([(header::CONTENT_TYPE, "application/json")], openapi_json) },
            ),
        )
        .route(
            "/api-docs/swagger-ui-bundle.js",
            get(|| asset("text/javascript; charset=utf-8", BUNDLE)),
        )
        .route(
            "/api-docs/swagger-ui.css",
            get(|| asset("text/css; charset=utf-8", CSS)),
        )
        .route(
            "/api-docs/favicon-32x32.png",
            get(|| asset("image/png", FAVICON)),
        )
}

async fn asset(content_type: &'static str, bytes: &'static [u8]) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        bytes,
    )
}
