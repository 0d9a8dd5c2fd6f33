namespace HybridVmm.Cli.Api;

/// <summary>Why the API refused a request: an RFC 7807 problem's status, title and detail. Data, not an exception.</summary>
public sealed record ApiProblem(int Status, string Title, string Detail)
{
    public static ApiProblem BadRequest(string detail) => new(400, "Invalid request", detail);

    public static ApiProblem NotFound(string detail) => new(404, "Not found", detail);

    public static ApiProblem Conflict(string detail) => new(409, "Conflict", detail);

    public static ApiProblem UnknownVm(string name) => NotFound($"no VM named '{name}'");
}

/// <summary>A result or the problem that stood in its way.</summary>
public readonly record struct ApiOutcome<T>(T? Value, ApiProblem? Problem)
{
    public static implicit operator ApiOutcome<T>(T value) => new(value, null);

    public static implicit operator ApiOutcome<T>(ApiProblem problem) => new(default, problem);
}
