;; Returns `err(handler-error)` whose message claims to be 2 GiB long
;; (pointer 0x10, length 0x7fffffff), far past the end of its 64 KiB memory:
;; the host must refuse to read it rather than allocate or copy 2 GiB.
(module
  (memory (export "memory") 1)
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
    (i32.store8 (i32.const 0x200) (i32.const 1))
    (i32.store (i32.const 0x204) (i32.const 0x10))
    (i32.store (i32.const 0x208) (i32.const 0x7fffffff))
    (i32.store8 (i32.const 0x20c) (i32.const 1))
    (i32.const 0x200)))
