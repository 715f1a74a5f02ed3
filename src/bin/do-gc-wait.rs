fn main() {
    std::process::exit(do_gc_wait::main())
}
