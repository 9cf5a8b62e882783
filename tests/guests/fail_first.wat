;; A transiently failing handler: its first attempt (`attempt` 1) returns a
;; *retryable* handler error ("not yet"); every later attempt returns `ok`.
;; Proves retries happen (and survive a restart) without anything random.
(module
  (memory (export "memory") 1)
  (data (i32.const 0x400) "not yet")
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
    (if (i32.le_u (i32.load offset=72 (local.get $event)) (i32.const 1))
      (then
        ;; err(handler-error { message: "not yet", retryable: true })
        (i32.store8 (i32.const 0x200) (i32.const 1))
        (i32.store (i32.const 0x204) (i32.const 0x400))
        (i32.store (i32.const 0x208) (i32.const 7))
        (i32.store8 (i32.const 0x20c) (i32.const 1))
        (return (i32.const 0x200))))
    (i32.const 0x100)))
