//! The part of crc-fast's API that the AWS SDK's checksums (`aws-smithy-checksums`, which
//! the S3 client always links) call: [`Digest`] and [`checksum`] for CRC-32 (ISO-HDLC),
//! CRC-32C and CRC-64/NVME. The workspace patches crates.io's crc-fast with this crate.
//!
//! Why: crc-fast chooses the CRC at run time from a catalogue of some sixty, so its software
//! fallback keeps a lookup table for every one of them: 690 KiB in each Lambda bootstrap,
//! against an 8 MB budget, for three CRCs. The work is done by the crates made for it:
//! `crc32fast` (SIMD, already linked for gzip) for CRC-32, the SDK's default, which every
//! object agentwire writes carries; `crc`'s byte-at-a-time tables (3 KiB) for the other two,
//! which only objects uploaded by other tools carry (`Table<16>` would be 48 KiB).
//!
//! Only what the SDK calls is here; an SDK release that calls more fails to compile rather
//! than misbehaving.

use std::fmt;

use crc::{CRC_32_ISCSI, CRC_64_NVME, Crc, Table};

/// The CRCs the SDK's checksums use (crc-fast's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CrcAlgorithm {
    /// CRC-32 as zlib, gzip and S3's `x-amz-checksum-crc32` compute it.
    Crc32IsoHdlc,
    /// CRC-32C (Castagnoli), S3's `x-amz-checksum-crc32c`.
    Crc32Iscsi,
    /// CRC-64/NVME, S3's `x-amz-checksum-crc64nvme`.
    Crc64Nvme,
}

static CRC32C: Crc<u32, Table<1>> = Crc::<u32, Table<1>>::new(&CRC_32_ISCSI);
static CRC64_NVME: Crc<u64, Table<1>> = Crc::<u64, Table<1>>::new(&CRC_64_NVME);

/// An incremental CRC: [`Digest::update`] with each part, [`Digest::finalize`] at any point.
#[derive(Clone)]
pub struct Digest {
    state: State,
}

#[derive(Clone)]
enum State {
    Crc32IsoHdlc(crc32fast::Hasher),
    Crc32Iscsi(crc::Digest<'static, u32, Table<1>>),
    Crc64Nvme(crc::Digest<'static, u64, Table<1>>),
}

impl Digest {
    pub fn new(algorithm: CrcAlgorithm) -> Digest {
        let state = match algorithm {
            CrcAlgorithm::Crc32IsoHdlc => State::Crc32IsoHdlc(crc32fast::Hasher::new()),
            CrcAlgorithm::Crc32Iscsi => State::Crc32Iscsi(CRC32C.digest()),
            CrcAlgorithm::Crc64Nvme => State::Crc64Nvme(CRC64_NVME.digest()),
        };
        Digest { state }
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Crc32IsoHdlc(hasher) => hasher.update(data),
            State::Crc32Iscsi(digest) => digest.update(data),
            State::Crc64Nvme(digest) => digest.update(data),
        }
    }

    /// The CRC of everything so far (widened to 64 bits, as crc-fast returns it); the digest
    /// can go on taking data.
    pub fn finalize(&self) -> u64 {
        match &self.state {
            State::Crc32IsoHdlc(hasher) => u64::from(hasher.clone().finalize()),
            State::Crc32Iscsi(digest) => u64::from(digest.clone().finalize()),
            State::Crc64Nvme(digest) => digest.clone().finalize(),
        }
    }

    /// Back to the state of a new digest of the same CRC.
    pub fn reset(&mut self) {
        *self = Digest::new(self.algorithm());
    }

    pub fn algorithm(&self) -> CrcAlgorithm {
        match self.state {
            State::Crc32IsoHdlc(_) => CrcAlgorithm::Crc32IsoHdlc,
            State::Crc32Iscsi(_) => CrcAlgorithm::Crc32Iscsi,
            State::Crc64Nvme(_) => CrcAlgorithm::Crc64Nvme,
        }
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Digest")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

/// The CRC of `buf` in one call.
pub fn checksum(algorithm: CrcAlgorithm, buf: &[u8]) -> u64 {
    match algorithm {
        CrcAlgorithm::Crc32IsoHdlc => u64::from(crc32fast::hash(buf)),
        CrcAlgorithm::Crc32Iscsi => u64::from(CRC32C.checksum(buf)),
        CrcAlgorithm::Crc64Nvme => CRC64_NVME.checksum(buf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [CrcAlgorithm; 3] = [
        CrcAlgorithm::Crc32IsoHdlc,
        CrcAlgorithm::Crc32Iscsi,
        CrcAlgorithm::Crc64Nvme,
    ];

    /// The catalogue's check values (the CRC of the ASCII digits 1 to 9), independent of
    /// either implementation.
    #[test]
    fn each_crc_gives_its_catalogued_check_value() {
        assert_eq!(
            checksum(CrcAlgorithm::Crc32IsoHdlc, b"123456789"),
            0xCBF4_3926
        );
        assert_eq!(
            checksum(CrcAlgorithm::Crc32Iscsi, b"123456789"),
            0xE306_9283
        );
        assert_eq!(
            checksum(CrcAlgorithm::Crc64Nvme, b"123456789"),
            0xAE8B_1486_0A79_9888
        );
    }

    /// All three start from all ones and end XORed with all ones, so nothing checks as 0.
    #[test]
    fn the_empty_input_checks_as_zero() {
        for algorithm in ALL {
            assert_eq!(checksum(algorithm, b""), 0, "{algorithm:?}");
            assert_eq!(Digest::new(algorithm).finalize(), 0, "{algorithm:?}");
        }
    }

    #[test]
    fn a_digest_fed_in_parts_matches_one_call_and_can_go_on_after_finalize() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
        for algorithm in ALL {
            let mut digest = Digest::new(algorithm);
            let mut at = 0;
            for len in [0, 1, 7, 16, 63, 4096, 17, 65_536] {
                let end = (at + len).min(data.len());
                digest.update(&data[at..end]);
                assert_eq!(
                    digest.finalize(),
                    checksum(algorithm, &data[..end]),
                    "{algorithm:?} after {end} bytes"
                );
                at = end;
            }
            digest.update(&data[at..]);
            assert_eq!(
                digest.finalize(),
                checksum(algorithm, &data),
                "{algorithm:?}"
            );
            digest.reset();
            assert_eq!(digest.finalize(), checksum(algorithm, b""), "{algorithm:?}");
            assert_eq!(digest.algorithm(), algorithm);
        }
    }
}
