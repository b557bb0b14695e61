use std::sync::Arc;

use super::*;
use crate::store::StoreError;

/// Sets its flag when dropped (an upstream call given up).
struct DropFlag(Arc<std::sync::atomic::AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_failed_user_message_write_drops_the_upstream_call_at_once() {
    let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = DropFlag(dropped.clone());
    let call = async move {
        let _flag = flag;
        std::future::pending::<()>().await
    };
    let failed = async { Err(StoreError::NotFound) };
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(5), alongside(failed, call))
        .await
        .expect("did not wait for the call");
    assert!(matches!(outcome, Err(StoreError::NotFound)));
    assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
}

#[tokio::test]
async fn a_call_that_ends_first_still_waits_for_the_write() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let written = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let store = {
        let written = written.clone();
        async move {
            let _ = rx.await;
            written.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok::<(), StoreError>(())
        }
    };
    let call = async move {
        let _ = tx.send(());
        "answer"
    };
    assert_eq!(alongside(store, call).await.unwrap(), "answer");
    assert!(written.load(std::sync::atomic::Ordering::SeqCst));
}
