fn main() {
    std::process::exit(do_deploy::main())
}
