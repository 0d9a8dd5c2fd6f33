using System.Net;

namespace HybridVmm.Cli.Common;

internal static class Endpoints
{
    /// <summary>Parses HOST:PORT where HOST is an IP address or "localhost".</summary>
    public static bool TryParse(string text, out IPEndPoint? endpoint)
    {
        endpoint = null;
        int colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text[(colon + 1)..], out int port) || port is < 0 or > 65535)
        {
            return false;
        }

        string host = text[..colon];
        IPAddress? address = host == "localhost" ? IPAddress.Loopback : IPAddress.TryParse(host, out IPAddress? parsed) ? parsed : null;
        if (address is null)
        {
            return false;
        }

        endpoint = new IPEndPoint(address, port);
        return true;
    }
}
