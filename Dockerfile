# One image: the whole mail server. Data (mail, database, keys) in /var/lib/appliance,
# config in /etc/appliance. Debian slim, not Alpine: LevelDB's prebuilt binaries
# for arm64/armv7 are glibc-only.
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY core core
COPY store store
COPY smtp smtp
COPY imap imap
COPY acme acme
COPY cli cli
RUN npm run build && npm prune --omit=dev

FROM node:24-bookworm-slim
RUN useradd --system --home-dir /var/lib/appliance --shell /usr/sbin/nologin appliance \
 && mkdir -p /etc/appliance /var/lib/appliance
WORKDIR /opt/appliance
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules node_modules
COPY --from=build /src/dist dist
COPY examples examples
RUN ln -s /opt/appliance/dist/cli/main.js /usr/local/bin/appliance && chmod +x dist/cli/main.js
ENV APPLIANCE_CONFIG=/etc/appliance/appliance.conf
VOLUME ["/var/lib/appliance", "/etc/appliance"]
EXPOSE 25 80 143 465 587 993
ENTRYPOINT ["appliance"]
CMD ["start"]
