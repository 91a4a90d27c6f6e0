//! The causal language-modelling loss with masked positions (prompt tokens are not learned).

use crate::ModelError;
use candle_core::{DType, Tensor, D};

/// Mean cross-entropy of predicting `targets` `(b, s)` from `logits` `(b, s, vocab)` over the
/// positions where `mask` `(b, s)` is 1 (0 elsewhere, e.g. for prompt tokens and padding).
/// `logits[:, i]` predicts `targets[:, i]`: the caller shifts the tokens.
pub fn masked_cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    mask: &Tensor,
) -> Result<Tensor, ModelError> {
    let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?; // (b, s, vocab)
    let picked = log_probs
        .gather(
            &targets.to_dtype(DType::U32)?.unsqueeze(D::Minus1)?,
            D::Minus1,
        )?
        .squeeze(D::Minus1)?; // (b, s)
    let mask = mask.to_dtype(DType::F32)?;
    let count = mask.sum_all()?.to_scalar::<f32>()?;
    if count == 0.0 {
        return Err(ModelError::Tensor(
            "no position is learned: the mask is all zeros".into(),
        ));
    }
    Ok(((picked * mask)?.sum_all()? * (-1.0 / count as f64))?)
}
