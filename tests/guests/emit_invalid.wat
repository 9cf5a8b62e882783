;; Emits an event whose payload is not JSON and returns the host's
;; `emit-error::invalid` message as its own handler error.
(module
  (import "hookbox:handler/emit@0.1.0" "emit"
    (func $emit (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0x400) "tick")
  (data (i32.const 0x410) "{oops")
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
    (call $emit
      (i32.const 0x400) (i32.const 4)
      (i32.const 0) (i32.const 0) (i32.const 0)
      (i32.const 0x410) (i32.const 5)
      (i32.const 0) (i32.const 0)
      (i32.const 0) (i32.const 0) (i32.const 0)
      (i32.const 0) (i32.const 0)
      (i32.const 0x500))
    ;; result<_, emit-error> at 0x500: tag, then emit-error at 0x504:
    ;; its tag, then the `invalid` string at 0x508 (ptr) / 0x50c (len).
    (if (i32.eqz (i32.load8_u (i32.const 0x500)))
      (then (return (i32.const 0x100))))
    (i32.store8 (i32.const 0x200) (i32.const 1))
    (i32.store (i32.const 0x204) (i32.load (i32.const 0x508)))
    (i32.store (i32.const 0x208) (i32.load (i32.const 0x50c)))
    (i32.store8 (i32.const 0x20c) (i32.const 0))
    (i32.const 0x200)))
