#![no_main]
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: weir::alloc::LazyHugeAlloc = weir::alloc::LazyHugeAlloc;

fuzz_target!(|data: &[u8]| weir::fuzzing::sasl_exchange(data));
