using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace HybridVmm.Cli.Api;

/// <summary>
/// The management API's routes (docs/serve.md): the host, and VMs by name. Every refusal is an RFC 7807 problem
/// (application/problem+json) with a status that says why: 400 a bad request, 401 no token, 403 a migration target
/// that refused this host's token, 404 an unknown VM or file, 409 a state transition the VM's state forbids or a name
/// already taken, 413 a body over the limit, 502 a migration target that could not be reached or failed.
/// </summary>
public static class ManagementApi
{
    /// <summary>The largest request body: a create request is a few hundred bytes.</summary>
    public const long MaxRequestBodyBytes = 64 * 1024;

    public static void Map(WebApplication app, ApiListener listener)
    {
        // A response refused without a body (no such route 404, wrong method 405, not JSON 415) gets a problem body too.
        app.UseStatusCodePages();
        app.Use(async (context, next) =>
        {
            // Kestrel and the JSON binder report malformed or oversized requests as exceptions; they become problems here.
            try
            {
                await next(context);
            }
            catch (BadHttpRequestException e) when (!context.Response.HasStarted)
            {
                await WriteProblemAsync(context, new ApiProblem(e.StatusCode, e.StatusCode == 413 ? "Request body too large" : "Invalid request",
                    e.StatusCode == 413 ? $"the request body exceeds {MaxRequestBodyBytes} bytes" : Innermost(e)));
            }
        });
        if (listener.Token is { } token)
        {
            app.Use(async (context, next) =>
            {
                if (context.Request.Query.TryGetValue("token", out var fromUrl) && Matches(fromUrl.ToString(), token))
                {
                    // The dashboard's way in, as Jupyter's: the token once in the URL, then a cookie only this site sends.
                    context.Response.Cookies.Append(TokenCookie, token, new CookieOptions
                    {
                        HttpOnly = true, SameSite = SameSiteMode.Strict, Path = "/", IsEssential = true,
                    });
                }
                else if (!HasToken(context.Request, token))
                {
                    context.Response.Headers.WWWAuthenticate = "Bearer";
                    await WriteProblemAsync(context, new ApiProblem(401, "Unauthorized",
                        "this API listens on TCP and needs 'Authorization: Bearer TOKEN' with the token from serve's --token-file (a browser: open /?token=TOKEN once)"));
                    return;
                }

                await next(context);
            });
        }

        app.UseWebSockets();
        app.MapOpenApi("/openapi.json");
        DashboardAssets.Map(app);
        RouteGroupBuilder api = app.MapGroup("/api");
        api.MapGet("/host", async (VmManager vms, CancellationToken ct) => Reply(await vms.HostAsync(ct)))
            .WithSummary("The host: memory, quantum, virtual time and VMs by state");
        api.MapGet("/partitions", async (VmManager vms, CancellationToken ct) => Reply(await vms.PartitionsAsync(ct)))
            .WithSummary("The hypervisor kernel's partitions: the root's own (ID 0) and each guest's, with its VM, vCPUs and counters");
        api.MapGet("/partitions/{id:int}", async (int id, VmManager vms, CancellationToken ct) => Reply(await vms.PartitionAsync(id, ct)))
            .WithSummary("One partition by its ID");
        api.MapGet("/vms", async (VmManager vms, CancellationToken ct) => Reply(await vms.ListAsync(ct)))
            .WithSummary("Every VM, with its state and statistics");
        api.MapPost("/vms", async (CreateVmRequest request, VmManager vms, CancellationToken ct) =>
        {
            ApiOutcome<VmInfo> created = await vms.CreateAsync(request, ct);
            return created.Problem is null ? Results.Created($"/api/vms/{created.Value!.Name}", created.Value) : Problem(created.Problem);
        }).WithSummary("Create a VM from an image or a snapshot file; start it at once with start: true");
        api.MapGet("/vms/{name}", async (string name, VmManager vms, CancellationToken ct) => Reply(await vms.ReadAsync(name, ct)))
            .WithSummary("One VM: state, vCPUs, memory, devices, instructions retired, exits by kind, channel traffic");
        api.MapDelete("/vms/{name}", async (string name, VmManager vms, CancellationToken ct) => Reply(await vms.DeleteAsync(name, ct)))
            .WithSummary("Stop and delete a VM, returning its memory to the host");
        api.MapGet("/vms/{name}/stats", async (string name, VmManager vms, CancellationToken ct) => Reply(await vms.StatisticsAsync(name, ct)))
            .WithSummary("A VM's counters");
        api.MapPost("/vms/{name}/start", async (string name, VmManager vms, CancellationToken ct) => Reply(await vms.StartAsync(name, ct)))
            .WithSummary("Start a created VM");
        api.MapPost("/vms/{name}/pause", async (string name, VmManager vms, CancellationToken ct) => Reply(await vms.PauseAsync(name, ct)))
            .WithSummary("Pause a running VM at an instruction boundary");
        api.MapPost("/vms/{name}/resume", async (string name, VmManager vms, CancellationToken ct) => Reply(await vms.ResumeAsync(name, ct)))
            .WithSummary("Resume a paused VM where it paused");
        api.MapPost("/vms/{name}/stop", async (string name, VmManager vms, CancellationToken ct) => Reply(await vms.StopAsync(name, ct)))
            .WithSummary("Stop a VM (it keeps its statistics until deleted)");
        api.MapPost("/vms/{name}/reset", async (string name, VmManager vms, CancellationToken ct) => Reply(await vms.ResetAsync(name, ct)))
            .WithSummary("Boot a VM again from its image");
        api.MapPost("/vms/{name}/save", async (string name, SaveVmRequest request, VmManager vms, CancellationToken ct) => Reply(await vms.SaveAsync(name, request, ct)))
            .WithSummary("Checkpoint a VM to a snapshot file; a running VM runs on");
        api.MapPost("/vms/{name}/migrate", async (string name, MigrateVmRequest request, VmManager vms, CancellationToken ct) => Reply(await vms.MigrateAsync(name, request, ct)))
            .WithSummary("Live-migrate a running VM to another host's migration listener (to: HOST:PORT); on success it leaves this host");
        api.MapGet("/vms/{name}/console", async (string name, HttpContext context, VmManager vms, CancellationToken ct) =>
            {
                if (context.WebSockets.IsWebSocketRequest)
                {
                    return await vms.RunConsoleAsync(name, () => context.WebSockets.AcceptWebSocketAsync(), ct) is { } refused
                        ? Problem(refused)
                        : Results.Empty;
                }

                ApiOutcome<(byte[] Bytes, long Total)> output = vms.ConsoleOutput(name);
                return output.Problem is { } problem ? Problem(problem) : Results.Bytes(output.Value.Bytes, "application/octet-stream");
            })
            .WithSummary("The VM's recent console output (the last 64 KiB); as a WebSocket, COM1 attached: that output replayed, then live output and input");
    }

    private static IResult Reply<T>(ApiOutcome<T> outcome) => outcome.Problem is { } problem ? Problem(problem) : Results.Ok(outcome.Value);

    private static IResult Problem(ApiProblem problem) => Results.Problem(detail: problem.Detail, statusCode: problem.Status, title: problem.Title);

    private static async Task WriteProblemAsync(HttpContext context, ApiProblem problem)
    {
        context.Response.StatusCode = problem.Status;
        await Problem(problem).ExecuteAsync(context);
    }

    /// <summary>The JSON reader's message, with the simulator's type names left out.</summary>
    private static string Innermost(Exception e)
    {
        while (e.InnerException is not null)
        {
            e = e.InnerException;
        }

        const string unmapped = "could not be mapped to any .NET member";
        int at = e.Message.IndexOf(unmapped, StringComparison.Ordinal);
        return at > 0 ? e.Message[..at].Replace("The JSON property", "unknown key", StringComparison.Ordinal).TrimEnd() + " (see /openapi.json)" : e.Message;
    }

    /// <summary>Compares the bearer token in constant time, so its bytes cannot be guessed one by one from response times.</summary>
    private static bool HasToken(HttpRequest request, string token)
    {
        string header = request.Headers.Authorization.ToString();
        const string scheme = "Bearer ";
        if (header.StartsWith(scheme, StringComparison.OrdinalIgnoreCase))
        {
            return Matches(header[scheme.Length..].Trim(), token);
        }

        // A browser on the dashboard sends the cookie that /?token= set (SameSite=Strict: never from another site).
        return request.Cookies.TryGetValue(TokenCookie, out string? cookie) && Matches(cookie, token);
    }

    /// <summary>The cookie that carries the token for the dashboard's page, script and API calls.</summary>
    private const string TokenCookie = "hybridvmm-token";

    private static bool Matches(string given, string token) =>
        CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(given)), SHA256.HashData(Encoding.UTF8.GetBytes(token)));
}
