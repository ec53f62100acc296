//! Watches on the simulator through kube::Client and kube-runtime: event types, selector
//! entry/exit, bookmarks, 410 Expired and the watcher's re-list, and the watch faults.

mod sim_support;

use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;
use sim_support::{pod, wait_for};
use spawner_k8s::sim::{Fault, SimConfig, Simulator, Verb};

async fn sim() -> Simulator {
    let config = SimConfig {
        nodes: vec![],
        bookmark_interval: Duration::from_millis(100),
        ..SimConfig::default()
    };
    Simulator::start(config).await.expect("simulator starts")
}

/// The next watch event, within 5 s.
async fn next<S>(stream: &mut S) -> WatchEvent<Pod>
where
    S: futures_util::Stream<Item = kube::Result<WatchEvent<Pod>>> + Unpin,
{
    match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("watch stream error: {e}"),
        Ok(None) => panic!("watch stream ended"),
        Err(_) => panic!("no watch event within 5 s"),
    }
}

/// The next event that is not a bookmark.
async fn next_change<S>(stream: &mut S) -> (String, Pod)
where
    S: futures_util::Stream<Item = kube::Result<WatchEvent<Pod>>> + Unpin,
{
    loop {
        match next(stream).await {
            WatchEvent::Added(p) => return ("ADDED".into(), p),
            WatchEvent::Modified(p) => return ("MODIFIED".into(), p),
            WatchEvent::Deleted(p) => return ("DELETED".into(), p),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => panic!("unexpected watch error {e:?}"),
        }
    }
}

#[tokio::test]
async fn watch_reports_added_modified_deleted_and_selector_exits() {
    let sim = sim().await;
    let pods: Api<Pod> = Api::default_namespaced(sim.client().await);
    let before = pods
        .create(&PostParams::default(), &pod("early", &["true"], json!({})))
        .await
        .unwrap();
    let rv = before.metadata.resource_version.clone().unwrap();

    let wp = WatchParams::default().labels("app=web").timeout(30);
    let mut stream = pods.watch(&wp, &rv).await.unwrap().boxed();

    let mut p = pod("w", &["true"], json!({}));
    p.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
    pods.create(&PostParams::default(), &p).await.unwrap();
    let (kind, seen) = next_change(&mut stream).await;
    assert_eq!((kind.as_str(), seen.metadata.name.as_deref()), ("ADDED", Some("w")));

    pods.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"a": "1"}}})),
    )
    .await
    .unwrap();
    let (kind, seen) = next_change(&mut stream).await;
    assert_eq!(kind, "MODIFIED");
    assert_eq!(seen.metadata.annotations.unwrap()["a"], "1");

    // Leaving the selector reads as DELETED; coming back as ADDED.
    pods.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}})),
    )
    .await
    .unwrap();
    assert_eq!(next_change(&mut stream).await.0, "DELETED");
    pods.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}})),
    )
    .await
    .unwrap();
    assert_eq!(next_change(&mut stream).await.0, "ADDED");

    // Changes to objects outside the selector are not sent at all; the delete of ours is.
    pods.patch(
        "early",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await
    .unwrap();
    pods.delete("w", &DeleteParams::default()).await.unwrap();
    let (kind, seen) = next_change(&mut stream).await;
    assert_eq!((kind.as_str(), seen.metadata.name.as_deref()), ("DELETED", Some("w")));
    assert_eq!(sim.stats().count(Verb::Watch, "pods"), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn watch_from_zero_sends_current_state_and_bookmarks_carry_the_latest_version() {
    let sim = sim().await;
    let pods: Api<Pod> = Api::default_namespaced(sim.client().await);
    pods.create(&PostParams::default(), &pod("one", &["true"], json!({})))
        .await
        .unwrap();
    let two = pods
        .create(&PostParams::default(), &pod("two", &["true"], json!({})))
        .await
        .unwrap();
    let mut stream = pods
        .watch(&WatchParams::default().timeout(30), "0")
        .await
        .unwrap()
        .boxed();
    assert_eq!(next_change(&mut stream).await.1.metadata.name.as_deref(), Some("one"));
    assert_eq!(next_change(&mut stream).await.1.metadata.name.as_deref(), Some("two"));
    let bookmark = loop {
        if let WatchEvent::Bookmark(b) = next(&mut stream).await {
            break b;
        }
    };
    let bookmark_rv: u64 = bookmark.metadata.resource_version.parse().unwrap();
    let two_rv: u64 = two.metadata.resource_version.unwrap().parse().unwrap();
    assert!(
        bookmark_rv >= two_rv,
        "bookmark {bookmark_rv} should be at least {two_rv}"
    );
    assert_eq!(bookmark.types.kind, "Pod");

    // Without allowWatchBookmarks, none arrive.
    let mut quiet = pods
        .watch(
            &WatchParams::default().disable_bookmarks().timeout(1),
            &bookmark_rv.to_string(),
        )
        .await
        .unwrap()
        .boxed();
    let got = tokio::time::timeout(Duration::from_secs(3), quiet.next())
        .await
        .expect("the 1 s watch timeout ends the stream");
    assert!(got.is_none(), "expected the stream to end without events, got {got:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn an_expired_resource_version_is_410_and_the_watcher_relists() {
    let sim = sim().await;
    let client = sim.client().await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let first = pods
        .create(&PostParams::default(), &pod("a", &["true"], json!({})))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("b", &["true"], json!({})))
        .await
        .unwrap();

    sim.inject(Fault::ExpireHistory);
    let old = first.metadata.resource_version.unwrap();
    let mut stream = pods.watch(&WatchParams::default(), &old).await.unwrap().boxed();
    match next(&mut stream).await {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }

    // kube-runtime's watcher + reflector with its default config: list, watch, and after a
    // 410, a fresh list.
    let (reader, writer) = reflector::store::<Pod>();
    let stream = watcher(pods.clone(), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {}
    });
    wait_for("the reflector to hold a and b", Duration::from_secs(5), || async {
        (reader.state().len() == 2).then_some(())
    })
    .await;
    let lists_before = sim.stats().count(Verb::List, "pods");

    // The watch goes silent (so it misses c), the history is compacted, and the stream is cut:
    // the re-watch from the watcher's last version gets 410 and it must re-list to see c.
    sim.inject(Fault::StallWatches {
        for_: Duration::from_secs(30),
    });
    pods.create(&PostParams::default(), &pod("c", &["true"], json!({})))
        .await
        .unwrap();
    sim.inject(Fault::ExpireHistory);
    sim.inject(Fault::CloseWatches);
    wait_for(
        "the reflector to see c after re-listing",
        Duration::from_secs(10),
        || async { (reader.state().len() == 3).then_some(()) },
    )
    .await;
    assert!(
        sim.stats().count(Verb::List, "pods") > lists_before,
        "the watcher re-listed"
    );
    pods.delete("a", &DeleteParams::default()).await.unwrap();
    wait_for("the reflector to drop a", Duration::from_secs(5), || async {
        (reader.state().len() == 2).then_some(())
    })
    .await;
    task.abort();
    sim.shutdown().await;
}

#[tokio::test]
async fn close_watches_ends_streams_and_stall_silences_only_open_ones() {
    let sim = sim().await;
    let pods: Api<Pod> = Api::default_namespaced(sim.client().await);
    let rv = pods
        .create(&PostParams::default(), &pod("x", &["true"], json!({})))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();

    let mut closing = pods.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    tokio::time::sleep(Duration::from_millis(50)).await;
    sim.inject(Fault::CloseWatches);
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(event) = closing.next().await {
            assert!(
                matches!(event, Ok(WatchEvent::Bookmark(_))),
                "only bookmarks before the close, got {event:?}"
            );
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream should end after CloseWatches");

    let mut stalled = pods.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    tokio::time::sleep(Duration::from_millis(50)).await;
    sim.inject(Fault::StallWatches {
        for_: Duration::from_secs(2),
    });
    pods.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
    )
    .await
    .unwrap();
    // Not even a bookmark (interval 100 ms) for a second …
    let silent = tokio::time::timeout(Duration::from_secs(1), stalled.next()).await;
    assert!(silent.is_err(), "a stalled stream must send nothing, got {silent:?}");
    // … while a watch opened after the stall works.
    let mut fresh = pods.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    assert_eq!(next_change(&mut fresh).await.0, "MODIFIED");
    // After the stall the old stream resumes where it was.
    assert_eq!(next_change(&mut stalled).await.0, "MODIFIED");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_streaming_list_watcher_gets_the_initial_state_then_changes() {
    let sim = sim().await;
    let pods: Api<Pod> = Api::default_namespaced(sim.client().await);
    for name in ["s1", "s2"] {
        pods.create(&PostParams::default(), &pod(name, &["true"], json!({})))
            .await
            .unwrap();
    }
    let (reader, writer) = reflector::store::<Pod>();
    let config = watcher::Config::default().streaming_lists().labels("!skip");
    let stream = watcher(pods.clone(), config)
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {}
    });
    tokio::time::timeout(Duration::from_secs(5), reader.wait_until_ready())
        .await
        .expect("initial events end")
        .unwrap();
    assert_eq!(reader.state().len(), 2);
    pods.create(&PostParams::default(), &pod("s3", &["true"], json!({})))
        .await
        .unwrap();
    wait_for("s3 in the reflector", Duration::from_secs(5), || async {
        (reader.state().len() == 3).then_some(())
    })
    .await;
    let stats = sim.stats();
    assert_eq!(
        stats.count(Verb::List, "pods"),
        0,
        "a streaming list is a watch, not a list"
    );
    task.abort();
    sim.shutdown().await;
}
