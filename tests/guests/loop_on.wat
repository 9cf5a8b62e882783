;; Loops forever on events of type `loop`; returns `ok` at once for every
;; other type. A handler that proves itself fast, then turns slow: the
;; scheduler may lend it the worker it keeps for the others, and must stop
;; after its first long delivery.
(module
  (memory (export "memory") 1)
  ;; Bump allocator for the host's canonical-ABI allocations (the event's
  ;; strings); never frees, grows memory when needed.
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
    ;; `type` is the string at offset 8 (pointer) / 12 (length).
    (if (i32.and
          (i32.eq (i32.load offset=12 (local.get $event)) (i32.const 4))
          ;; "loop" read as a little-endian i32
          (i32.eq (i32.load (i32.load offset=8 (local.get $event))) (i32.const 0x706f6f6c)))
      (then (loop $forever (br $forever))))
    (i32.const 0x100)))
