;; world: hookbox:test-guests/wasi-handler
;; Imports WASI filesystem and environment (allowed to import, denied in
;; effect): returns `ok` when there are no preopened directories and no
;; environment variables, a handler error otherwise.
(module
  (import "wasi:filesystem/preopens@0.2.0" "get-directories" (func $dirs (param i32)))
  (import "wasi:cli/environment@0.2.0" "get-environment" (func $env (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0x400) "WASI is not denied")
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
    ;; each returns a list: ptr at +0, length at +4
    (call $dirs (i32.const 0x500))
    (call $env (i32.const 0x510))
    (if (i32.or (i32.load (i32.const 0x504)) (i32.load (i32.const 0x514)))
      (then
        (i32.store8 (i32.const 0x200) (i32.const 1))
        (i32.store (i32.const 0x204) (i32.const 0x400))
        (i32.store (i32.const 0x208) (i32.const 18))
        (return (i32.const 0x200))))
    (i32.const 0x100)))
