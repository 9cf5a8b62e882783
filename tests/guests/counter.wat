;; Counts its own calls in a global (instance state) and logs the count as
;; one digit ('1', '2', …), to show when an instance is reused. `attempt`
;; 98 returns a handler error (the instance stays usable); 99 traps (the
;; instance is poisoned).
(module
  (import "hookbox:handler/log@0.1.0" "log" (func $log (param i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (global $calls (mut i32) (i32.const 0))
  ;; Bump allocator for the host's canonical-ABI allocations (the event's
  ;; strings, results of imports); never frees, grows memory when needed.
  (global $heap (mut i32) (i32.const 0x8000))
  (func (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $ptr) (local.get $size)))
    (block $fits
      (br_if $fits (i32.le_u (global.get $heap) (i32.shl (memory.size) (i32.const 16))))
      (br_if $fits
        (i32.ne
          (memory.grow
            (i32.sub (i32.add (i32.shr_u (global.get $heap) (i32.const 16)) (i32.const 1))
                     (memory.size)))
          (i32.const -1)))
      unreachable)
    (local.get $ptr))
  (func (export "handle") (param $event i32) (result i32)
    (local $attempt i32)
    (local.set $attempt (i32.load offset=72 (local.get $event)))
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (i32.store8 (i32.const 0x400) (i32.add (i32.const 0x30) (global.get $calls)))
    (call $log (i32.const 2) (i32.const 0x400) (i32.const 1) (i32.const 0) (i32.const 0))
    (if (i32.eq (local.get $attempt) (i32.const 99))
      (then unreachable))
    (if (i32.eq (local.get $attempt) (i32.const 98))
      (then
        (i32.store8 (i32.const 0x200) (i32.const 1))
        (i32.store (i32.const 0x204) (i32.const 0x400))
        (i32.store (i32.const 0x208) (i32.const 1))
        (i32.store8 (i32.const 0x20c) (i32.const 0))
        (return (i32.const 0x200))))
    (i32.const 0x100)))
