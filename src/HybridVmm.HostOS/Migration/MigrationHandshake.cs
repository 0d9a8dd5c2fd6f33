using System.Security.Cryptography;
using System.Text;
using static HybridVmm.HostOS.Migration.MigrationProtocol;

namespace HybridVmm.HostOS.Migration;

/// <summary>How a migration handshake ended.</summary>
public enum HandshakeOutcome
{
    /// <summary>Both peers proved they hold the token (or the target is open and the source accepts that).</summary>
    Authenticated,

    /// <summary>A migration peer that failed authentication: a wrong token, or a token on one side only.</summary>
    Refused,

    /// <summary>Target side: the connection is no migration source (silent, closed, or speaking something else); drop it.</summary>
    NotAPeer,
}

public sealed record HandshakeResult(HandshakeOutcome Outcome, string? Reason)
{
    public static readonly HandshakeResult Authenticated = new(HandshakeOutcome.Authenticated, null);
}

/// <summary>
/// Mutual authentication of a live migration before any guest state moves (issue 14, defect 4): a challenge and
/// response with HMAC-SHA256 over a random nonce from each side, keyed by the token both hosts hold
/// (<c>--token-file</c>). The token never crosses the wire, a recorded exchange cannot be replayed (each side picks
/// a fresh nonce), and the two directions use different labels, so one side's answer is never the other's.
/// </summary>
/// <remarks>
/// Frames (<see cref="MigrationProtocol"/>): the target sends <c>Challenge</c> { u8 mode (0: open, 1: token); 32-byte
/// nonce T }; the source answers <c>Response</c> { 32-byte nonce S; HMAC(token, "hybridvmm-migration source" ‖ T ‖ S),
/// or 32 zero bytes from a source without a token }; the target checks it and sends <c>Proof</c> { HMAC(token,
/// "hybridvmm-migration target" ‖ T ‖ S), zero when open }, or <c>Failed</c>. A source with a token also checks the
/// proof, so it never sends a guest to a host that does not know the token. A source without a token migrates only
/// to an open target (<c>receive --insecure</c>); a source with one refuses an open target.
/// </remarks>
public static class MigrationHandshake
{
    public const int NonceBytes = 32;
    private const int MacBytes = 32;
    private static readonly byte[] SourceLabel = "hybridvmm-migration source"u8.ToArray();
    private static readonly byte[] TargetLabel = "hybridvmm-migration target"u8.ToArray();

    /// <summary>The HMAC key of a token read from a token file.</summary>
    public static byte[] Key(string token) => Encoding.UTF8.GetBytes(token);

    /// <summary>
    /// The target's side. <paramref name="key"/> null: open (anyone who can connect may migrate a VM here).
    /// <paramref name="timeout"/> bounds the wait for the source's response; a connection that sends nothing, closes
    /// or sends something else is <see cref="HandshakeOutcome.NotAPeer"/>.
    /// </summary>
    public static async Task<HandshakeResult> AcceptAsync(Stream source, byte[]? key, TimeSpan timeout, CancellationToken cancellationToken)
    {
        byte[] nonceT = RandomNumberGenerator.GetBytes(NonceBytes);
        FrameType type;
        byte[] payload;
        using (var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            deadline.CancelAfter(timeout);
            try
            {
                await WriteFrameAsync(source, FrameType.Challenge, [key is null ? (byte)0 : (byte)1, .. nonceT], deadline.Token);
                (type, payload) = await ReadFrameAsync(source, deadline.Token);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                return new HandshakeResult(HandshakeOutcome.NotAPeer, $"no migration handshake within {timeout.TotalSeconds:0.###} s");
            }
            catch (Exception e) when (e is IOException or EndOfStreamException or ObjectDisposedException or System.Net.Sockets.SocketException or InvalidDataException)
            {
                return new HandshakeResult(HandshakeOutcome.NotAPeer, $"not a migration source: {e.Message}");
            }
        }

        if (type == FrameType.Failed)
        {
            return new HandshakeResult(HandshakeOutcome.Refused, $"the source refused to authenticate: {PeerText(payload)}");
        }

        if (type != FrameType.Response || payload.Length != NonceBytes + MacBytes)
        {
            return new HandshakeResult(HandshakeOutcome.NotAPeer, $"not a migration source: its first frame is {type} of {payload.Length} bytes, not a handshake response");
        }

        byte[] nonceS = payload[..NonceBytes];
        byte[] proof = new byte[MacBytes];
        if (key is not null)
        {
            if (!CryptographicOperations.FixedTimeEquals(payload.AsSpan(NonceBytes), Mac(key, SourceLabel, nonceT, nonceS)))
            {
                await TrySendAsync(source, FrameType.Failed, FailedPayload("authentication failed: the migration tokens differ"), cancellationToken);
                return new HandshakeResult(HandshakeOutcome.Refused, "the source's migration token is not the one in --token-file");
            }

            proof = Mac(key, TargetLabel, nonceT, nonceS);
        }

        try
        {
            await WriteFrameAsync(source, FrameType.Proof, proof, cancellationToken);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or System.Net.Sockets.SocketException)
        {
            return new HandshakeResult(HandshakeOutcome.NotAPeer, $"the source went away during the handshake: {e.Message}");
        }

        return HandshakeResult.Authenticated;
    }

    /// <summary>
    /// The source's side. <paramref name="key"/> null: no token, so only an open target is accepted. Network failures
    /// throw (<see cref="IOException"/> and the like) as any other failure of the migration would.
    /// </summary>
    public static async Task<HandshakeResult> ConnectAsync(Stream target, byte[]? key, CancellationToken cancellationToken)
    {
        (FrameType type, byte[] payload) = await ReadFrameAsync(target, cancellationToken);
        if (type == FrameType.Failed)
        {
            throw new IOException($"the target refused the migration: {PeerText(payload)}");
        }

        if (type != FrameType.Challenge || payload.Length != 1 + NonceBytes || payload[0] > 1)
        {
            throw new InvalidDataException($"the target is not a hybridvmm receive of migration protocol {MigrationProtocol.Version}: it opened with {type} of {payload.Length} bytes");
        }

        bool targetWantsToken = payload[0] == 1;
        if (targetWantsToken != key is not null)
        {
            string reason = targetWantsToken
                ? "the target requires a migration token: give --token-file with the token of its receive --token-file"
                : "the target does not authenticate (receive --insecure), so the guest is not sent to it; drop --token-file to allow that";
            await TrySendAsync(target, FrameType.Failed, FailedPayload(targetWantsToken ? "the source has no migration token" : "the source requires an authenticated target"), cancellationToken);
            return new HandshakeResult(HandshakeOutcome.Refused, reason);
        }

        byte[] nonceT = payload[1..];
        byte[] nonceS = RandomNumberGenerator.GetBytes(NonceBytes);
        byte[] mac = key is null ? new byte[MacBytes] : Mac(key, SourceLabel, nonceT, nonceS);
        await WriteFrameAsync(target, FrameType.Response, [.. nonceS, .. mac], cancellationToken);
        (type, payload) = await ReadFrameAsync(target, cancellationToken);
        if (type == FrameType.Failed)
        {
            return new HandshakeResult(HandshakeOutcome.Refused, $"the target refused: {PeerText(payload)}");
        }

        if (type != FrameType.Proof || payload.Length != MacBytes)
        {
            throw new InvalidDataException($"the target answered the handshake with {type} of {payload.Length} bytes");
        }

        if (key is not null && !CryptographicOperations.FixedTimeEquals(payload, Mac(key, TargetLabel, nonceT, nonceS)))
        {
            return new HandshakeResult(HandshakeOutcome.Refused, "the target could not prove it holds the migration token");
        }

        return HandshakeResult.Authenticated;
    }

    private static byte[] Mac(byte[] key, byte[] label, byte[] nonceT, byte[] nonceS) =>
        HMACSHA256.HashData(key, (byte[])[.. label, .. nonceT, .. nonceS]);

    private static async Task TrySendAsync(Stream stream, FrameType type, byte[] payload, CancellationToken cancellationToken)
    {
        try
        {
            await WriteFrameAsync(stream, type, payload, cancellationToken);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or System.Net.Sockets.SocketException)
        {
        }
    }
}
