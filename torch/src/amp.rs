//! bf16 autocast on CUDA. tch exposes autocast on/off but not its dtype
//! (libtorch's default for CUDA is fp16), so the dtype is set through the
//! C++ function libtorch exports, by its mangled name.

use tch::Device;

/// c10::DeviceType::CUDA.
const CUDA: i8 = 1;
/// c10::ScalarType::BFloat16.
const BFLOAT16: i8 = 15;

#[link(name = "torch_cpu")]
extern "C" {
    /// `at::autocast::set_autocast_dtype(c10::DeviceType, c10::ScalarType)`.
    #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
    fn set_autocast_dtype(device: i8, dtype: i8);
    /// `at::autocast::get_autocast_dtype(c10::DeviceType)`.
    #[link_name = "_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE"]
    fn get_autocast_dtype(device: i8) -> i8;
}

/// Runs `f` with bf16 autocast when `bf16` is set and `device` is CUDA;
/// otherwise (CPU, or fp32) runs it as is.
pub fn with_precision<T>(bf16: bool, device: Device, f: impl FnOnce() -> T) -> T {
    if !bf16 || !device.is_cuda() {
        return f();
    }
    set_bf16();
    tch::autocast(true, f)
}

/// Makes CUDA autocast use bf16.
#[expect(unsafe_code, reason = "libtorch's autocast dtype has no tch wrapper")]
pub fn set_bf16() {
    // SAFETY: both take and return plain enums (int8_t) and touch only
    // libtorch's thread-local autocast state.
    unsafe { set_autocast_dtype(CUDA, BFLOAT16) }
}

/// The dtype CUDA autocast uses now (a `c10::ScalarType` number).
#[expect(unsafe_code, reason = "libtorch's autocast dtype has no tch wrapper")]
pub fn cuda_dtype() -> i8 {
    // SAFETY: see `set_bf16`.
    unsafe { get_autocast_dtype(CUDA) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cuda_autocast_dtype_becomes_bf16() {
        // Works without a GPU: the setting is thread-local state, and
        // libtorch's default for CUDA is fp16 (c10::ScalarType::Half, 5).
        assert_eq!(super::cuda_dtype(), 5);
        super::set_bf16();
        assert_eq!(super::cuda_dtype(), super::BFLOAT16);
    }
}
