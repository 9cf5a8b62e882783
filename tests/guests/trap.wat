;; Traps on `unreachable` straight away. Also shipped as a bare core module
;; to test that core modules are refused.
(module
  (memory (export "memory") 1)
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (i32.const 0x8000))
  (func (export "handle") (param $event i32) (result i32)
    unreachable))
