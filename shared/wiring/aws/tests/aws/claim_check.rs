//! Appends too large for a DynamoDB item go to S3 whole (a claim check) and read back
//! byte-exactly, on DynamoDB Local and a local S3 server.

use crate::common::stack;
use agentwire_aws_stack::{Settings, Stack};
use agentwire_session::{AppendRequest, CreateStream, Mode, Payload, ReadFrom};
use bytes::Bytes;

async fn read_all(stack: &Stack, name: &str) -> Vec<u8> {
    let sessions = stack.sessions().unwrap();
    let (mut data, mut from) = (Vec::new(), ReadFrom::Start);
    loop {
        let batch = sessions.read(name, from, 1024 * 1024).await.unwrap();
        for record in &batch.records {
            data.extend_from_slice(&record.data);
        }
        if batch.next >= batch.info.tail {
            return data;
        }
        from = ReadFrom::At(batch.next);
    }
}

/// The keys under `blobs/` in the stack's bucket.
async fn blobs(settings: &Settings) -> Vec<String> {
    let endpoint = settings.s3_endpoint.as_deref().unwrap();
    let listed = agentwire_s3::local_client(endpoint)
        .list_objects_v2()
        .bucket(&settings.bucket)
        .prefix("blobs/")
        .send()
        .await
        .unwrap();
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_5_mib_byte_append_round_trips_through_s3() {
    let (settings, stack) = stack().await;
    let sessions = stack.sessions().unwrap();
    sessions
        .create(CreateStream {
            name: "acme/upload".into(),
            content_type: Some("application/octet-stream".into()),
            ..CreateStream::default()
        })
        .await
        .unwrap();
    let small = Bytes::from_static(b"header;");
    let big: Bytes = (0..5 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    for data in [small.clone(), big.clone(), small.clone()] {
        let units = data.len() as u64;
        sessions
            .append(
                "acme/upload",
                AppendRequest {
                    content_type: Some("application/octet-stream".into()),
                    payload: Payload { data, units },
                    ..AppendRequest::default()
                },
            )
            .await
            .unwrap();
    }
    let mut expected = small.to_vec();
    expected.extend_from_slice(&big);
    expected.extend_from_slice(&small);
    assert_eq!(read_all(&stack, "acme/upload").await, expected);
    // Only the large append went to S3; the small ones stayed in DynamoDB items.
    assert_eq!(blobs(&settings).await.len(), 1);
}

#[tokio::test]
async fn a_large_json_batch_keeps_its_message_offsets() {
    let (settings, stack) = stack().await;
    let sessions = stack.sessions().unwrap();
    sessions
        .create(CreateStream {
            name: "acme/chat".into(),
            content_type: Some("application/json".into()),
            ..CreateStream::default()
        })
        .await
        .unwrap();
    // 600 messages of ~1 KB: one append, over the claim-check size.
    let text = "x".repeat(1000);
    let messages: Vec<String> = (0..600)
        .map(|i| format!(r#"{{"type":"message.delta","i":{i},"data":{{"text":"{text}"}}}}"#))
        .collect();
    let body = format!("[{}]", messages.join(","));
    let payload = Payload::frame(Mode::Json, Bytes::from(body), false).unwrap();
    assert!(payload.data.len() > agentwire_dynamo::CLAIM_CHECK_BYTES);
    sessions
        .append(
            "acme/chat",
            AppendRequest {
                content_type: Some("application/json".into()),
                payload,
                ..AppendRequest::default()
            },
        )
        .await
        .unwrap();
    // Resume from the middle of the batch: exactly the later messages.
    let batch = sessions
        .read(
            "acme/chat",
            ReadFrom::At(agentwire_session::Offset(599)),
            1 << 20,
        )
        .await
        .unwrap();
    let events = agentwire_session::events_of(&batch);
    assert_eq!(blobs(&settings).await.len(), 1);
    assert_eq!(events.len(), 1);
    assert!(
        std::str::from_utf8(&events[0].json)
            .unwrap()
            .contains(r#""i":599"#)
    );
}
