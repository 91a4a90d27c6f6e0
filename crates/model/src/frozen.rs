//! A matrix product with a frozen weight whose backward pass skips the weight's gradient.
//!
//! candle's autograd computes the gradient of both operands of every `matmul`, even when one
//! of them is a constant that no loss will ever update. In LoRA training every base
//! projection and the output head are such constants: computing `xᵀ·∂y` for them costs as
//! much as the forward product itself, plus a weight-sized buffer per projection per step
//! (540 MB for SmolLM2-135M). [`frozen_matmul`] runs the same product as a custom op whose
//! backward gives only `∂x = ∂y·W`, which is what reaches the adapters.

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape, Storage, Tensor};

/// `x·wt` for a constant `wt` `(in, out)`: `(n, in)` to `(n, out)`.
pub(crate) fn frozen_matmul(x: &Tensor, wt: &Tensor) -> candle_core::Result<Tensor> {
    // Without a gradient to carry (inference), or off the CPU, the plain product.
    if !x.track_op() || !x.device().is_cpu() {
        return x.matmul(wt);
    }
    x.contiguous()?.apply_op1(Frozen { wt: wt.clone() })
}

struct Frozen {
    wt: Tensor,
}

impl CustomOp1 for Frozen {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("frozen-matmul: f32 only");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("frozen-matmul: the input must be contiguous");
        };
        let x = Tensor::from_slice(&data[start..end], layout.shape(), &Device::Cpu)?;
        let y = x.matmul(&self.wt)?;
        let shape = y.shape().clone();
        let (storage, layout) = y.storage_and_layout();
        let out = match &*storage {
            Storage::Cpu(CpuStorage::F32(v)) if layout.is_contiguous() => {
                let (start, end) = layout.contiguous_offsets().expect("contiguous");
                CpuStorage::F32(v[start..end].to_vec())
            }
            _ => candle_core::bail!("frozen-matmul: unexpected product storage"),
        };
        Ok((out, shape))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        // ∂x = ∂y · Wᵀᵀ; `wt` is (in, out), so ∂y (n, out) · wtᵀ (out, in).
        Ok(Some(grad.matmul(&self.wt.t()?)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    #[test]
    fn same_product_and_input_gradient_as_matmul() {
        let dev = Device::Cpu;
        let wt = Tensor::randn(0f32, 1.0, (6, 4), &dev).unwrap();
        let x = Var::randn(0f32, 1.0, (3, 6), &dev).unwrap();
        let target = Tensor::randn(0f32, 1.0, (3, 4), &dev).unwrap();
        let loss = |y: Tensor| y.sub(&target).unwrap().sqr().unwrap().sum_all().unwrap();
        let plain = x.as_tensor().matmul(&wt).unwrap();
        let frozen = frozen_matmul(x.as_tensor(), &wt).unwrap();
        let diff = (&plain - &frozen)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
        let g_plain = loss(plain).backward().unwrap();
        let g_frozen = loss(frozen).backward().unwrap();
        let (a, b) = (g_plain.get(&x).unwrap(), g_frozen.get(&x).unwrap());
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
        // The weight gets no gradient at all.
        assert!(g_frozen.get(&wt).is_none());
        assert!(g_plain.get(&wt).is_some());
    }
}
