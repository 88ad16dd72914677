//! The protocol's decisions, as pure functions every backend calls inside its transaction.

use bytes::Bytes;

use crate::content::{DEFAULT_CONTENT_TYPE, Mode, Payload, content_types_match};
use crate::error::{AppendError, CreateError};
use crate::model::{
    AppendRequest, CreateStream, Expiry, ForkFrom, ProducerClaim, ProducerState, StreamInfo,
};
use crate::offset::Offset;

/// The stream state an append is decided against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendTarget<'a> {
    pub content_type: &'a str,
    pub tail: Offset,
    pub closed: bool,
    pub last_stream_seq: Option<&'a str>,
    /// The producer claim whose append closed the stream, if one did.
    pub closed_by: Option<&'a ProducerClaim>,
}

/// What a backend must do for an append that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendPlan {
    /// Write the payload (possibly empty), close if asked, store the producer state.
    Write { producer: Option<ProducerState> },
    /// A producer retry: write nothing, report the producer's state.
    Duplicate { producer: Option<ProducerState> },
    /// Close-only on a closed stream: nothing to do.
    AlreadyClosed,
}

/// Decides an append against the stream and the producer's stored state.
///
/// Precedence follows DS §5.2: a closed stream first, then content type, then the producer
/// (so retries dedupe before Stream-Seq is checked), then Stream-Seq.
pub fn decide_append(
    target: &AppendTarget<'_>,
    producer_state: Option<ProducerState>,
    request: &AppendRequest,
) -> Result<AppendPlan, AppendError> {
    if target.closed {
        if let (Some(claim), Some(closer)) = (&request.producer, target.closed_by)
            && claim == closer
        {
            return Ok(AppendPlan::Duplicate {
                producer: Some(ProducerState {
                    epoch: claim.epoch,
                    last_seq: claim.seq,
                }),
            });
        }
        if request.close && request.payload.is_empty() {
            return Ok(AppendPlan::AlreadyClosed);
        }
        return Err(AppendError::Closed { tail: target.tail });
    }
    if !request.payload.is_empty() {
        let requested = request.content_type.as_deref().unwrap_or_default();
        if !content_types_match(target.content_type, requested) {
            return Err(AppendError::ContentTypeMismatch {
                requested: requested.to_owned(),
                stream_type: target.content_type.to_owned(),
            });
        }
    }
    let producer = match &request.producer {
        None => None,
        Some(claim) => match decide_producer(producer_state, claim)? {
            ProducerDecision::Accept(state) => Some(state),
            ProducerDecision::Duplicate(state) => {
                return Ok(AppendPlan::Duplicate {
                    producer: Some(state),
                });
            }
        },
    };
    if let (Some(received), Some(last)) = (&request.stream_seq, target.last_stream_seq)
        && received.as_bytes() <= last.as_bytes()
    {
        return Err(AppendError::SeqRegression {
            received: received.clone(),
            last: last.to_owned(),
        });
    }
    Ok(AppendPlan::Write { producer })
}

/// The verdict on a producer claim that is not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerDecision {
    /// Apply the append; store this state with it.
    Accept(ProducerState),
    /// Already applied; this is the stored state.
    Duplicate(ProducerState),
}

/// Kafka-style idempotent producer rules (DS §5.2.1): epochs fence zombies, sequences
/// dedupe retries and expose gaps.
pub fn decide_producer(
    state: Option<ProducerState>,
    claim: &ProducerClaim,
) -> Result<ProducerDecision, AppendError> {
    let fresh = ProducerState {
        epoch: claim.epoch,
        last_seq: 0,
    };
    let Some(state) = state else {
        return if claim.seq == 0 {
            Ok(ProducerDecision::Accept(fresh))
        } else {
            Err(AppendError::SeqGap {
                expected: 0,
                received: claim.seq,
            })
        };
    };
    if claim.epoch < state.epoch {
        return Err(AppendError::StaleEpoch {
            received: claim.epoch,
            current: state.epoch,
        });
    }
    if claim.epoch > state.epoch {
        return if claim.seq == 0 {
            Ok(ProducerDecision::Accept(fresh))
        } else {
            Err(AppendError::EpochMustStartAtZero(claim.seq))
        };
    }
    if claim.seq <= state.last_seq {
        Ok(ProducerDecision::Duplicate(state))
    } else if claim.seq == state.last_seq + 1 {
        Ok(ProducerDecision::Accept(ProducerState {
            epoch: state.epoch,
            last_seq: claim.seq,
        }))
    } else {
        Err(AppendError::SeqGap {
            expected: state.last_seq + 1,
            received: claim.seq,
        })
    }
}

/// The configuration a create request resolves to, compared for idempotent re-creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedConfig {
    pub content_type: String,
    pub expiry: Expiry,
    pub closed: bool,
    /// The fork source and point.
    pub fork: Option<(String, Offset)>,
    /// Whether the request named the fork offset; if not, any point matches on re-creation.
    pub explicit_fork_offset: bool,
}

/// Checks an idempotent PUT against an existing stream: 200 when every setting matches.
pub fn check_same_config(
    existing: &StreamInfo,
    wanted: &ResolvedConfig,
) -> Result<(), CreateError> {
    let mismatch = |field| CreateError::ConfigMismatch {
        name: existing.name.clone(),
        field,
    };
    if !content_types_match(&existing.content_type, &wanted.content_type) {
        return Err(mismatch("content type"));
    }
    if existing.expiry != wanted.expiry {
        return Err(mismatch("TTL or expiry"));
    }
    if existing.closed != wanted.closed {
        return Err(mismatch("closed state"));
    }
    let same_fork = match (&existing.fork, &wanted.fork) {
        (None, None) => true,
        (Some((source, at)), Some((wanted_source, wanted_at))) => {
            source == wanted_source && (!wanted.explicit_fork_offset || at == wanted_at)
        }
        _ => false,
    };
    if !same_fork {
        return Err(mismatch("fork source or offset"));
    }
    Ok(())
}

/// The fork source as a backend sees it while creating a fork.
#[derive(Debug, Clone, Copy)]
pub struct ForkSource<'a> {
    pub info: &'a StreamInfo,
    /// Units in the source record that starts at the requested fork offset (0 at the tail).
    pub next_record_units: u64,
}

/// A create request resolved against its fork source: what to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatePlan {
    pub config: ResolvedConfig,
    pub initial: Payload,
}

/// Resolves a create: the content type (the default, or the fork source's), the expiry (a
/// fork inherits its source's unless it sets its own), the fork point, and the framed body.
pub fn plan_create(
    request: &CreateStream,
    source: Option<ForkSource<'_>>,
) -> Result<CreatePlan, CreateError> {
    let (content_type, expiry, fork) = match (&request.fork, source) {
        (Some(fork), Some(source)) => {
            let source_type = &source.info.content_type;
            let content_type = match &request.content_type {
                Some(requested) if !content_types_match(source_type, requested) => {
                    return Err(CreateError::ForkContentTypeMismatch {
                        requested: requested.clone(),
                        source_type: source_type.clone(),
                    });
                }
                _ => source_type.clone(),
            };
            let point = fork_point(fork, source.info.tail, source.next_record_units)?;
            let expiry = Expiry::for_fork(request.expiry, source.info.expiry);
            (
                content_type,
                expiry,
                Some((source.info.name.clone(), point)),
            )
        }
        _ => {
            let content_type = request
                .content_type
                .clone()
                .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned());
            (content_type, request.expiry, None)
        }
    };
    let initial = Payload::frame(Mode::of(&content_type), Bytes::clone(&request.body), true)?;
    Ok(CreatePlan {
        config: ResolvedConfig {
            content_type,
            expiry,
            closed: request.closed,
            fork,
            explicit_fork_offset: request.fork.as_ref().is_some_and(|f| f.offset.is_some()),
        },
        initial,
    })
}

/// Where a fork diverges, given its source's tail and the record that starts at the offset.
///
/// `next_record_units` is the size of the source record beginning at the fork offset (0 at
/// the tail): a sub-offset may reach into that record but not past it.
pub fn fork_point(
    fork: &ForkFrom,
    source_tail: Offset,
    next_record_units: u64,
) -> Result<Offset, CreateError> {
    let offset = fork.offset.unwrap_or(source_tail);
    if offset > source_tail {
        return Err(CreateError::ForkOffsetBeyondTail {
            offset,
            tail: source_tail,
        });
    }
    if fork.sub_offset > next_record_units {
        return Err(CreateError::SubOffsetPastBoundary {
            sub_offset: fork.sub_offset,
            available: next_record_units,
        });
    }
    Ok(offset.advance(fork.sub_offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Payload;
    use bytes::Bytes;

    fn claim(epoch: u64, seq: u64) -> ProducerClaim {
        ProducerClaim {
            id: "p".into(),
            epoch,
            seq,
        }
    }

    fn state(epoch: u64, last_seq: u64) -> Option<ProducerState> {
        Some(ProducerState { epoch, last_seq })
    }

    #[test]
    fn producer_rules_follow_the_spec_table() {
        use ProducerDecision::*;
        assert_eq!(
            decide_producer(None, &claim(0, 0)),
            Ok(Accept(ProducerState {
                epoch: 0,
                last_seq: 0
            }))
        );
        assert_eq!(
            decide_producer(None, &claim(3, 0)),
            Ok(Accept(ProducerState {
                epoch: 3,
                last_seq: 0
            }))
        );
        assert_eq!(
            decide_producer(None, &claim(0, 2)),
            Err(AppendError::SeqGap {
                expected: 0,
                received: 2
            })
        );
        assert_eq!(
            decide_producer(state(2, 5), &claim(1, 9)),
            Err(AppendError::StaleEpoch {
                received: 1,
                current: 2
            })
        );
        assert_eq!(
            decide_producer(state(2, 5), &claim(3, 1)),
            Err(AppendError::EpochMustStartAtZero(1))
        );
        assert_eq!(
            decide_producer(state(2, 5), &claim(3, 0)),
            Ok(Accept(ProducerState {
                epoch: 3,
                last_seq: 0
            }))
        );
        assert_eq!(
            decide_producer(state(2, 5), &claim(2, 5)),
            Ok(Duplicate(ProducerState {
                epoch: 2,
                last_seq: 5
            }))
        );
        assert_eq!(
            decide_producer(state(2, 5), &claim(2, 0)),
            Ok(Duplicate(ProducerState {
                epoch: 2,
                last_seq: 5
            }))
        );
        assert_eq!(
            decide_producer(state(2, 5), &claim(2, 6)),
            Ok(Accept(ProducerState {
                epoch: 2,
                last_seq: 6
            }))
        );
        assert_eq!(
            decide_producer(state(2, 5), &claim(2, 8)),
            Err(AppendError::SeqGap {
                expected: 6,
                received: 8
            })
        );
    }

    fn target(closed: bool) -> AppendTarget<'static> {
        AppendTarget {
            content_type: "application/json",
            tail: Offset(4),
            closed,
            last_stream_seq: Some("b"),
            closed_by: None,
        }
    }

    fn request(body: &'static str) -> AppendRequest {
        AppendRequest {
            content_type: Some("application/json".into()),
            payload: Payload {
                data: Bytes::from_static(body.as_bytes()),
                units: u64::from(!body.is_empty()),
            },
            ..AppendRequest::default()
        }
    }

    #[test]
    fn closed_streams_refuse_appends_before_other_checks() {
        let mut req = request("1");
        req.content_type = Some("text/plain".into());
        assert_eq!(
            decide_append(&target(true), None, &req),
            Err(AppendError::Closed { tail: Offset(4) })
        );
        let close_only = AppendRequest {
            close: true,
            ..AppendRequest::default()
        };
        assert_eq!(
            decide_append(&target(true), None, &close_only),
            Ok(AppendPlan::AlreadyClosed)
        );
    }

    #[test]
    fn the_closing_producer_tuple_is_a_duplicate() {
        let closer = claim(1, 3);
        let t = AppendTarget {
            closed_by: Some(&closer),
            ..target(true)
        };
        let mut req = request("1");
        req.producer = Some(claim(1, 3));
        assert!(matches!(
            decide_append(&t, state(1, 3), &req),
            Ok(AppendPlan::Duplicate { .. })
        ));
        req.producer = Some(claim(1, 4));
        assert!(matches!(
            decide_append(&t, state(1, 3), &req),
            Err(AppendError::Closed { .. })
        ));
    }

    #[test]
    fn content_type_then_producer_then_stream_seq() {
        let mut req = request("1");
        req.content_type = Some("text/plain".into());
        assert!(matches!(
            decide_append(&target(false), None, &req),
            Err(AppendError::ContentTypeMismatch { .. })
        ));

        let mut retry = request("1");
        retry.stream_seq = Some("a".into());
        retry.producer = Some(claim(0, 1));
        assert!(matches!(
            decide_append(&target(false), state(0, 1), &retry),
            Ok(AppendPlan::Duplicate { .. })
        ));

        let mut regress = request("1");
        regress.stream_seq = Some("b".into());
        assert!(matches!(
            decide_append(&target(false), None, &regress),
            Err(AppendError::SeqRegression { .. })
        ));
        regress.stream_seq = Some("c".into());
        assert_eq!(
            decide_append(&target(false), None, &regress),
            Ok(AppendPlan::Write { producer: None })
        );
    }

    #[test]
    fn fork_points_stay_within_the_source() {
        let fork = |offset, sub_offset| ForkFrom {
            source: "s".into(),
            offset,
            sub_offset,
        };
        assert_eq!(fork_point(&fork(None, 0), Offset(10), 0), Ok(Offset(10)));
        assert_eq!(
            fork_point(&fork(Some(Offset(4)), 2), Offset(10), 3),
            Ok(Offset(6))
        );
        assert!(matches!(
            fork_point(&fork(Some(Offset(11)), 0), Offset(10), 0),
            Err(CreateError::ForkOffsetBeyondTail { .. })
        ));
        assert!(matches!(
            fork_point(&fork(Some(Offset(4)), 4), Offset(10), 3),
            Err(CreateError::SubOffsetPastBoundary { .. })
        ));
    }
}
