//! The attribution receipt: a canonical, versioned ABI encoding of everything an attribution
//! rests on and everything it decided, so that its keccak256 is what settlement commits to
//! and any validator can recompute it field by field.
//!
//! Every number in it is an integer: a span's rarity in micro-nats, an example's influence in
//! parts per billion of the answer's most influential example, shares in parts per billion,
//! coverage in parts per million, amounts in the token's smallest unit.

use alloy_primitives::{keccak256, B256, U256};
use alloy_sol_types::{sol, SolValue};

/// The receipt format's version ([`AttributionReceipt::version`]).
pub const RECEIPT_VERSION: u16 = 1;

sol! {
    /// Where a span occurs in the training corpus.
    #[derive(Debug, PartialEq, Eq)]
    struct SpanOccurrence {
        uint64 contribution;
        /// Token position in the span index's text.
        uint64 position;
    }

    /// A span of the answer found verbatim in the corpus.
    #[derive(Debug, PartialEq, Eq)]
    struct AttributedSpan {
        /// Answer token positions `start..end`.
        uint32 start;
        uint32 end;
        /// Occurrences in the corpus.
        uint64 count;
        /// −ln of its unigram probability, in micro-nats.
        uint64 rarity;
        SpanOccurrence[] occurrences;
    }

    /// A training example among the answer's most influential by gradient.
    #[derive(Debug, PartialEq, Eq)]
    struct ExampleInfluence {
        /// Its index in `examples.bin`.
        uint64 example;
        uint64 contribution;
        /// Parts per billion of the most influential example's score.
        uint64 score;
    }

    /// A contribution's share of the data payout, and the engines' parts of it.
    #[derive(Debug, PartialEq, Eq)]
    struct ContributionWeight {
        uint64 contribution;
        uint64 datanet;
        /// Parts per billion of the span engine's credit.
        uint64 spanShare;
        /// Parts per billion of the gradient engine's credit.
        uint64 gradientShare;
        /// coverage · spanShare + (10⁶ − coverage) · gradientShare.
        uint128 weight;
    }

    /// What a contribution is paid.
    #[derive(Debug, PartialEq, Eq)]
    struct Payout {
        uint64 contribution;
        uint256 amount;
    }

    /// The receipt.
    #[derive(Debug, PartialEq, Eq)]
    struct AttributionReceipt {
        uint16 version;
        bytes32 baseWeightsHash;
        bytes32 adapterWeightsHash;
        bytes32 manifestHash;
        bytes32 spanIndexRoot;
        bytes32 sketchStoreRoot;
        uint32[] prompt;
        uint32[] answer;
        AttributedSpan[] spans;
        ExampleInfluence[] gradientTop;
        /// Parts per million of the answer's tokens inside attributed spans: the span
        /// engine's part of the weights.
        uint32 coverage;
        ContributionWeight[] weights;
        uint256 amount;
        Payout[] payouts;
    }
}

/// Why bytes are not a receipt.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("not an attribution receipt: {0}")]
    Decode(String),
    #[error("receipt format {0}; this build reads {RECEIPT_VERSION}")]
    Version(u16),
}

impl AttributionReceipt {
    /// The canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        self.abi_encode()
    }

    /// keccak256 of the canonical bytes: what settlement commits to.
    pub fn hash(&self) -> B256 {
        keccak256(self.encode())
    }

    /// Reads a receipt, refusing bytes that are not exactly a canonical encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, ReceiptError> {
        let receipt = <Self as SolValue>::abi_decode(bytes)
            .map_err(|e| ReceiptError::Decode(e.to_string()))?;
        if receipt.version != RECEIPT_VERSION {
            return Err(ReceiptError::Version(receipt.version));
        }
        // Padding or trailing bytes would give one receipt two hashes.
        if receipt.encode() != bytes {
            return Err(ReceiptError::Decode(
                "the bytes are not the receipt's canonical encoding".into(),
            ));
        }
        Ok(receipt)
    }

    /// Total paid out: equal to `amount` whenever anything was credited.
    pub fn paid(&self) -> U256 {
        self.payouts.iter().map(|p| p.amount).sum()
    }
}

/// The fields in which `found` differs from `expected`, as `field: expected → found` lines
/// (empty when they are identical).
pub fn differences(expected: &AttributionReceipt, found: &AttributionReceipt) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = |name: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{name}: {a} → {b}"));
        }
    };
    field(
        "version",
        expected.version.to_string(),
        found.version.to_string(),
    );
    for (name, a, b) in [
        (
            "base weights hash",
            expected.baseWeightsHash,
            found.baseWeightsHash,
        ),
        (
            "adapter weights hash",
            expected.adapterWeightsHash,
            found.adapterWeightsHash,
        ),
        ("manifest hash", expected.manifestHash, found.manifestHash),
        (
            "span index root",
            expected.spanIndexRoot,
            found.spanIndexRoot,
        ),
        (
            "sketch store root",
            expected.sketchStoreRoot,
            found.sketchStoreRoot,
        ),
    ] {
        field(name, a.to_string(), b.to_string());
    }
    field(
        "prompt",
        format!("{:?}", expected.prompt),
        format!("{:?}", found.prompt),
    );
    field(
        "answer",
        format!("{:?}", expected.answer),
        format!("{:?}", found.answer),
    );
    list(&mut field, "spans", &expected.spans, &found.spans);
    list(
        &mut field,
        "gradient top",
        &expected.gradientTop,
        &found.gradientTop,
    );
    field(
        "coverage",
        expected.coverage.to_string(),
        found.coverage.to_string(),
    );
    list(&mut field, "weights", &expected.weights, &found.weights);
    field(
        "amount",
        expected.amount.to_string(),
        found.amount.to_string(),
    );
    list(&mut field, "payouts", &expected.payouts, &found.payouts);
    out
}

fn list<T: std::fmt::Debug + PartialEq>(
    field: &mut impl FnMut(&str, String, String),
    name: &str,
    a: &[T],
    b: &[T],
) {
    if a.len() != b.len() {
        field(
            &format!("{name} (count)"),
            a.len().to_string(),
            b.len().to_string(),
        );
    }
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if x != y {
            field(&format!("{name}[{i}]"), format!("{x:?}"), format!("{y:?}"));
        }
    }
}
