fn main() {
    std::process::exit(do_tag::main())
}
