// A Fibonacci claim for the Stone prover (layout `small`): reads n from the program input and
// writes n and the n-th Fibonacci number (starting 1, 1) to the output segment. The steps it
// runs grow with n, so one compiled program gives runs of several trace lengths.
%builtins output
func main(output_ptr: felt*) -> (output_ptr: felt*) {
    alloc_locals;
    local n;
    %{ ids.n = program_input['n'] %}
    assert output_ptr[0] = n;
    let res = fib(1, 1, n);
    assert output_ptr[1] = res;
    return (output_ptr=&output_ptr[2]);
}

func fib(first: felt, second: felt, n: felt) -> felt {
    if (n == 0) {
        return second;
    }
    return fib(first=second, second=first + second, n=n - 1);
}
