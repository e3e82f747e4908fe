fn main() -> std::process::ExitCode {
    opsbox::main()
}
