;; world: hookbox:hostile-guests/sockets
;; Tries the network: resolves `localhost` through WASI sockets. Returns
;; `ok` when the lookup is refused, a handler error when it succeeds.
(module
  (import "wasi:sockets/instance-network@0.2.0" "instance-network" (func $network (result i32)))
  (import "wasi:sockets/ip-name-lookup@0.2.0" "resolve-addresses"
    (func $resolve (param i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0x400) "localhost")
  (data (i32.const 0x410) "the network is reachable")
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
    ;; result<resolve-address-stream, error-code>: tag at 0x500
    (call $resolve (call $network) (i32.const 0x400) (i32.const 9) (i32.const 0x500))
    (if (i32.eqz (i32.load8_u (i32.const 0x500)))
      (then
        (i32.store8 (i32.const 0x200) (i32.const 1))
        (i32.store (i32.const 0x204) (i32.const 0x410))
        (i32.store (i32.const 0x208) (i32.const 24))
        (return (i32.const 0x200))))
    (i32.const 0x100)))
