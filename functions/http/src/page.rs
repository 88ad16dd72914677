//! The grading page at `/grade/`, from the files bundled at build time (`build.rs`), as
//! `agentwire dev` serves it from `--grading-dir`.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

include!(concat!(env!("OUT_DIR"), "/page.rs"));

fn file(name: &str) -> Response {
    if PAGE.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the grading page was not bundled into this build: run `npm run build --prefix clients` before `bash functions/build.sh`\n",
        )
            .into_response();
    }
    match PAGE.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, body)) => ([(header::CONTENT_TYPE, *kind)], *body).into_response(),
        None => (StatusCode::NOT_FOUND, "no such file of the grading page\n").into_response(),
    }
}

/// `/grade` (redirected to `/grade/index.html`: API Gateway's `/grade/{proxy+}` route
/// needs a file name), `/grade/` and its files.
pub fn router() -> Router {
    Router::new()
        .route(
            "/grade",
            get(|| async { Redirect::permanent("/grade/index.html") }),
        )
        .route("/grade/", get(|| async { file("index.html") }))
        .route(
            "/grade/{file}",
            get(|Path(name): Path<String>| async move { file(&name) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn get(path: &str) -> (StatusCode, String, Vec<u8>) {
        let request = axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .expect("request");
        let response = router().oneshot(request).await.expect("response");
        let kind = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .expect("body");
        (status, kind, body.to_vec())
    }

    /// The test command builds the page first (tests/run-all.sh), so it must be bundled.
    #[tokio::test]
    async fn the_bundled_grading_page_is_served_at_grade() {
        let (status, kind, body) = get("/grade/").await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(kind, "text/html; charset=utf-8");
        let built = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../clients/grading/dist/index.html"
        ))
        .expect("the built page");
        assert_eq!(body, built);
        let (status, kind, _) = get("/grade/app.js").await;
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::OK, "text/javascript; charset=utf-8")
        );
        assert_eq!(get("/grade/secret.txt").await.0, StatusCode::NOT_FOUND);
        assert_eq!(get("/grade").await.0, StatusCode::PERMANENT_REDIRECT);
    }
}
